// The one precompiled header: LibTorch's C++ frontend is by far the heaviest include.
#pragma once
#include <torch/torch.h>
