// Walking a model's swappable linears, and the name rules that pick some of them: what every
// layer swap builds on (transforms::prepare/convert, lora::apply_lora/merge_lora, GPTQ, the
// exporters).
//
// Names are full module paths ("model.layers.0.self_attn.q_proj"). A rule is a glob (fnmatch
// syntax); it matches a name if it matches the whole name or a dotted suffix of it, so "q_proj"
// and "*.q_proj" both pick every q_proj, as PEFT's target_modules do.
#pragma once

#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qat/nn/linear.h"

namespace qat::nn {

bool name_matches(const std::string& pattern, const std::string& name);
// True when `name` matches one of the patterns.
bool any_match(const std::vector<std::string>& patterns, const std::string& name);
// The include/exclude rule every layer swap uses: an `include` pattern matches and no `exclude`
// pattern does.
bool selected(const std::vector<std::string>& include, const std::vector<std::string>& exclude,
              const std::string& name);

// Calls fn(parent, slot, full_name, layer) for every linear a model holds in a swappable slot
// (ModuleWithLinears), parents in module order. fn may replace the layer in its slot.
using SlotVisitor =
    std::function<void(ModuleWithLinears& parent, const std::string& slot,
                       const std::string& full_name, const std::shared_ptr<LinearBase>& layer)>;
void for_each_linear(torch::nn::Module& model, const SlotVisitor& fn);

}  // namespace qat::nn
