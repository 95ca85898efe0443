#!/bin/sh
# The data flow of the lib/ folders, upstream first: a folder may include its own headers and those
# of folders before it, never those after it (so no include cycle can form). A new folder must be
# placed here, or the check fails naming it.
# usage: check_include_layers.sh LIB_DIR
set -eu
lib=${1:?usage: check_include_layers.sh LIB_DIR}
order="core io config data model quant distributed train graph lowering infer onnx energy app"
rank() {
  i=0
  for f in $order; do
    [ "$f" = "$1" ] && { echo $i; return; }
    i=$((i + 1))
  done
  echo -1
}
status=0
checked=0
for dir in "$lib"/*/; do
  folder=$(basename "$dir")
  r=$(rank "$folder")
  if [ "$r" -lt 0 ]; then
    echo "lib/$folder: not in the layer order of $0 (add it where the data flow puts it)"
    status=1
    continue
  fi
  # Every quoted include naming a lib folder: "folder/file.h".
  for dep in $(grep -rhoE '^#include "[a-z_]+/' "$dir" | sed -E 's/^#include "([a-z_]+)\//\1/' | sort -u); do
    [ "$dep" = prom ] && continue  # the generated version header (build dir), not a lib folder
    d=$(rank "$dep")
    checked=$((checked + 1))
    if [ "$d" -lt 0 ] || [ "$d" -gt "$r" ]; then
      echo "lib/$folder includes $dep/ (files: $(grep -rlE "^#include \"$dep/" "$dir" | tr '\n' ' '))"
      echo "  allowed: folders before it in: $order"
      status=1
    fi
  done
done
echo "include layers: $checked folder dependencies checked, $( [ $status -eq 0 ] && echo ok || echo FAILED )"
exit $status
