#include "trainers/model_state.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <set>

#include "qat/fake_quant/fake_quantizer.h"
#include "qat/nn/fake_quant_linear.h"

namespace qat::train {

std::vector<NamedParam> trainable_parameters(torch::nn::Module& model) {
  std::vector<NamedParam> out;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    if (item.value().requires_grad()) out.push_back({item.key(), item.value()});
  }
  return out;
}

namespace {

// Fake-quant modules by name, visited in a fixed order.
template <typename Fn>
void for_each_fake_quant_module(torch::nn::Module& model, Fn&& fn) {
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    fn(item.key(), *item.value());
  }
}

bool is_fake_quant_module(torch::nn::Module& m) {
  return dynamic_cast<fake_quant::FakeQuantizerImpl*>(&m) != nullptr ||
         dynamic_cast<nn::FakeQuantLinear*>(&m) != nullptr;
}

}  // namespace

std::map<std::string, at::Tensor> training_state(torch::nn::Module& model) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : trainable_parameters(model)) out[p.name] = p.param.detach();
  for_each_fake_quant_module(model, [&](const std::string& name, torch::nn::Module& m) {
    if (!is_fake_quant_module(m)) return;
    for (const auto& b : m.named_buffers(/*recurse=*/false)) out[name + "." + b.key()] = b.value();
    if (auto* fq = dynamic_cast<fake_quant::FakeQuantizerImpl*>(&m)) {
      const fake_quant::Observer* obs = fq->observer();
      if (obs != nullptr && obs->has_range()) {
        out[name + ".observer.lo"] = obs->lo();
        out[name + ".observer.hi"] = obs->hi();
        out[name + ".observer.shape"] = at::tensor(obs->shape(), at::kLong);
      }
    }
  });
  return out;
}

void load_training_state(torch::nn::Module& model, const std::map<std::string, at::Tensor>& state) {
  c10::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> targets;
  for (const auto& item : model.named_parameters(true)) targets[item.key()] = item.value();
  for (const auto& item : model.named_buffers(true)) targets[item.key()] = item.value();
  std::map<std::string, fake_quant::FakeQuantizerImpl*> quantizers;
  for_each_fake_quant_module(model, [&](const std::string& name, torch::nn::Module& m) {
    if (auto* fq = dynamic_cast<fake_quant::FakeQuantizerImpl*>(&m)) quantizers[name] = fq;
  });

  std::set<std::string> loaded;
  for (const auto& [key, value] : state) {
    const std::string suffix = ".observer.lo";
    if (key.size() > suffix.size() &&
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0) {
      const std::string q = key.substr(0, key.size() - suffix.size());
      auto it = quantizers.find(q);
      TORCH_CHECK(
          it != quantizers.end() && it->second->observer() != nullptr,
          "checkpoint has an observer range for '", q,
          "' but the model has no static-range quantizer there: the quantization config differs");
      auto hi = state.find(q + ".observer.hi");
      auto shape = state.find(q + ".observer.shape");
      TORCH_CHECK(hi != state.end() && shape != state.end(), "checkpoint observer state of '", q,
                  "' is incomplete");
      const at::Tensor s = shape->second.to(at::kLong).contiguous();
      std::vector<int64_t> dims(s.data_ptr<int64_t>(), s.data_ptr<int64_t>() + s.numel());
      it->second->observer()->set_state(value.clone(), hi->second.clone(), dims);
      continue;
    }
    if (key.find(".observer.") != std::string::npos) continue;  // hi/shape: read with lo
    auto it = targets.find(key);
    TORCH_CHECK(it != targets.end(), "checkpoint tensor '", key,
                "' has no place in the model: the checkpoint was written with another method or "
                "quantization config than this one");
    TORCH_CHECK(it->second.sizes() == value.sizes(), "checkpoint tensor '", key, "' has shape ",
                value.sizes(), " but the model expects ", it->second.sizes());
    it->second.copy_(value);
    loaded.insert(key);
  }
  for (const auto& p : trainable_parameters(model)) {
    TORCH_CHECK(loaded.count(p.name), "checkpoint lacks trainable parameter '", p.name,
                "': it was written with another method or LoRA/quantization config");
  }
}

void set_quantizer_steps(torch::nn::Module& model, int64_t step) {
  c10::NoGradGuard no_grad;
  for (const auto& item : model.modules(/*include_self=*/false)) {
    if (auto* fq = dynamic_cast<fake_quant::FakeQuantizerImpl*>(item.get())) fq->set_step(step);
    if (auto* fl = dynamic_cast<nn::FakeQuantLinear*>(item.get())) fl->set_step(step);
  }
}

}  // namespace qat::train
