#include "model/layer.h"

#include "core/error.h"

namespace prom::model {

const std::vector<LayerRole>& all_roles() {
  static const std::vector<LayerRole> roles = {LayerRole::kStem,           LayerRole::kDepthwise,
                                               LayerRole::kPointwiseExpand, LayerRole::kPointwiseProject,
                                               LayerRole::kLastConv,        LayerRole::kClassifier};
  return roles;
}

const char* role_name(LayerRole role) {
  switch (role) {
    case LayerRole::kStem: return "stem";
    case LayerRole::kDepthwise: return "depthwise";
    case LayerRole::kPointwiseExpand: return "pointwise_expand";
    case LayerRole::kPointwiseProject: return "pointwise_project";
    case LayerRole::kLastConv: return "last_conv";
    case LayerRole::kClassifier: return "classifier";
  }
  return "unknown";
}

LayerRole role_from_name(const std::string& name) {
  for (LayerRole r : all_roles())
    if (name == role_name(r)) return r;
  throw ConfigError("unknown layer role '" + name +
                    "' (roles: stem, depthwise, pointwise_expand, pointwise_project, last_conv, classifier)");
}

}  // namespace prom::model
