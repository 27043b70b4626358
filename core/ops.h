// All tensor ops in one include.
#pragma once

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "core/ops/shape_ops.h"
#include "core/random.h"
#include "core/tensor.h"
