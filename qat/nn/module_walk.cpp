#include "qat/nn/module_walk.h"

#include <fnmatch.h>

namespace qat::nn {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

bool name_matches(const std::string& pattern, const std::string& name) {
  if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) return true;
  const std::string suffix = "*." + pattern;
  return fnmatch(suffix.c_str(), name.c_str(), 0) == 0;
}

bool any_match(const std::vector<std::string>& patterns, const std::string& name) {
  for (const auto& p : patterns)
    if (name_matches(p, name)) return true;
  return false;
}

bool selected(const std::vector<std::string>& include, const std::vector<std::string>& exclude,
              const std::string& name) {
  return any_match(include, name) && !any_match(exclude, name);
}

void for_each_linear(torch::nn::Module& model, const SlotVisitor& fn) {
  std::vector<std::pair<std::string, std::shared_ptr<ModuleWithLinears>>> parents;
  if (auto* self = dynamic_cast<ModuleWithLinears*>(&model)) {
    parents.emplace_back("", std::shared_ptr<ModuleWithLinears>(self, [](auto*) {}));
  }
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (auto p = std::dynamic_pointer_cast<ModuleWithLinears>(item.value()))
      parents.emplace_back(item.key(), p);
  }
  for (auto& [path, parent] : parents)
    for (const auto& [name, layer] : parent->linears()) fn(*parent, name, join(path, name), layer);
}

}  // namespace qat::nn
