#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "qat/nn/module_walk.h"

using namespace qat;

namespace {

struct Block : nn::ModuleWithLinears {
  std::shared_ptr<nn::LinearBase> q_proj, k_proj;
  Block() {
    q_proj = std::make_shared<nn::Linear>(8, 8);
    k_proj = std::make_shared<nn::Linear>(8, 4);
    register_linear("q_proj", q_proj);
    register_linear("k_proj", k_proj);
  }
};

struct Model : nn::ModuleWithLinears {
  std::shared_ptr<Block> a, b;
  std::shared_ptr<nn::LinearBase> lm_head;
  Model() {
    a = register_module("a", std::make_shared<Block>());
    b = register_module("b", std::make_shared<Block>());
    lm_head = std::make_shared<nn::Linear>(8, 16);
    register_linear("lm_head", lm_head);
  }
};

}  // namespace

TEST_CASE("a name rule matches the whole name or a dotted suffix of it", "[module_walk]") {
  CHECK(nn::name_matches("q_proj", "model.layers.0.self_attn.q_proj"));
  CHECK(nn::name_matches("*.q_proj", "model.layers.0.self_attn.q_proj"));
  CHECK(nn::name_matches("self_attn.q_proj", "model.layers.0.self_attn.q_proj"));
  CHECK(nn::name_matches("model.layers.0.*", "model.layers.0.mlp.up_proj"));
  CHECK(nn::name_matches("*embed*", "model.embed_tokens"));
  CHECK_FALSE(nn::name_matches("q_proj", "model.layers.0.self_attn.q_proj_extra"));
  CHECK_FALSE(nn::name_matches("proj", "model.layers.0.self_attn.q_proj"));  // not a dotted suffix
  CHECK_FALSE(nn::name_matches("model.layers.1.*", "model.layers.0.mlp.up_proj"));
  CHECK(nn::any_match({"k_proj", "v_proj"}, "layers.0.v_proj"));
  CHECK_FALSE(nn::any_match({}, "layers.0.v_proj"));
}

TEST_CASE("for_each_linear visits every slot with its full name, and a visitor may swap it",
          "[module_walk]") {
  Model m;
  std::vector<std::string> names;
  nn::for_each_linear(m, [&](nn::ModuleWithLinears&, const std::string&, const std::string& full,
                             const std::shared_ptr<nn::LinearBase>&) { names.push_back(full); });
  // The model's own slots first, then its children in module order; slots by name.
  REQUIRE(names ==
          std::vector<std::string>{"lm_head", "a.k_proj", "a.q_proj", "b.k_proj", "b.q_proj"});

  nn::for_each_linear(m, [&](nn::ModuleWithLinears& parent, const std::string& slot,
                             const std::string& full, const std::shared_ptr<nn::LinearBase>& l) {
    if (full == "b.q_proj")
      parent.replace_linear(slot, std::make_shared<nn::Linear>(l->in_features(), 3));
  });
  REQUIRE(m.b->q_proj->out_features() == 3);  // the member sees the swap
  REQUIRE(m.a->q_proj->out_features() == 8);
}
