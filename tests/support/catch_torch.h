// Precompiled into every test binary: libtorch first, then Catch2. c10/util/Logging.h defines a
// CHECK macro (a fatal assertion that aborts and is never counted); Catch2's CHECK must be the
// one tests see, so libtorch's is dropped before Catch2 defines its own.
#pragma once

#include <ATen/ATen.h>
#include <torch/autograd.h>

#undef CHECK
#include <catch2/catch.hpp>
