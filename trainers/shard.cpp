#include "trainers/shard.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>

namespace qat::train {

namespace {

constexpr int64_t kShardLine = 16;  // elements: 64 bytes of float32

}  // namespace

int64_t shard_piece_size(int64_t numel, int world_size) {
  TORCH_CHECK(world_size >= 1, "shard: world size must be >= 1");
  const int64_t per = (numel + world_size - 1) / world_size;
  return (per + kShardLine - 1) / kShardLine * kShardLine;
}

ShardRange shard_range(int64_t numel, int world_size, int rank) {
  const int64_t piece = shard_piece_size(numel, world_size);
  ShardRange r;
  r.begin = std::min(numel, piece * rank);
  r.end = std::min(numel, r.begin + piece);
  return r;
}

ShardedOptimizer::ShardedOptimizer(std::vector<NamedParam> params, AdamWConfig cfg,
                                   Communicator& comm)
    : params_(std::move(params)), comm_(comm) {
  std::vector<NamedParam> pieces;
  std::vector<bool> decay;
  for (size_t k = 0; k < params_.size(); ++k) {
    const at::Tensor& p = params_[k].param;
    TORCH_CHECK(p.is_contiguous(), "train.shard: parameter ", params_[k].name,
                " is not contiguous");
    ranges_.push_back(shard_range(p.numel(), comm.world_size(), comm.rank()));
    piece_.push_back(shard_piece_size(p.numel(), comm.world_size()));
    offset_.push_back(segment_);
    segment_ += piece_.back();
    if (ranges_.back().size() == 0) continue;
    owned_.push_back(k);
    // A view of the parameter's own storage: the fused update writes straight into it.
    pieces.push_back({params_[k].name,
                      p.detach().view(-1).narrow(0, ranges_.back().begin, ranges_.back().size())});
    decay.push_back(decays(params_[k].name, p));
  }
  opt_ = std::make_unique<AdamW>(std::move(pieces), cfg, std::move(decay));
  has_grad_.assign(params_.size(), false);
}

void ShardedOptimizer::reduce_gradients() {
  c10::NoGradGuard no_grad;
  const int world = comm_.world_size();
  const at::TensorOptions opts = params_.front().param.options().requires_grad(false);
  // Rank-major: rank r's segment holds piece r of every gradient, each padded to its piece size.
  at::Tensor flat = at::zeros({segment_ * world}, opts);
  at::Tensor used = at::zeros({static_cast<int64_t>(params_.size())}, opts);
  for (size_t k = 0; k < params_.size(); ++k) {
    at::Tensor g = params_[k].param.grad();
    if (!g.defined()) continue;
    used[static_cast<int64_t>(k)].fill_(1);
    g = g.contiguous().view(-1);
    for (int r = 0; r < world; ++r) {
      const ShardRange piece = shard_range(g.numel(), world, r);
      if (piece.size() == 0) break;
      flat.narrow(0, segment_ * r + offset_[k], piece.size())
          .copy_(g.narrow(0, piece.begin, piece.size()));
    }
    params_[k].param.mutable_grad().reset();  // the full gradient is not needed any more
  }
  comm_.all_reduce_sum(used);
  grad_shard_ = at::empty({segment_}, opts);
  comm_.reduce_scatter_sum(grad_shard_, flat);
  const at::Tensor used_host = used.cpu();
  const auto used_acc = used_host.accessor<float, 1>();
  for (size_t k = 0; k < params_.size(); ++k) has_grad_[k] = used_acc[static_cast<int64_t>(k)] > 0;
}

namespace {

// The owned gradient pieces of the parameters that have a gradient this step.
std::vector<at::Tensor> owned_grads(const std::vector<size_t>& owned,
                                    const std::vector<bool>& has_grad,
                                    const std::vector<ShardRange>& ranges,
                                    const std::vector<int64_t>& offset, const at::Tensor& shard) {
  std::vector<at::Tensor> out;
  for (size_t k : owned) {
    out.push_back(has_grad[k] ? shard.narrow(0, offset[k], ranges[k].size()) : at::Tensor());
  }
  return out;
}

}  // namespace

double ShardedOptimizer::clip(double max_norm) {
  TORCH_CHECK(grad_shard_.defined(), "ShardedOptimizer: reduce_gradients() before clip()");
  std::vector<at::Tensor> grads;
  for (const at::Tensor& g : owned_grads(owned_, has_grad_, ranges_, offset_, grad_shard_))
    if (g.defined()) grads.push_back(g);
  double local = 0.0;
  if (!grads.empty()) {
    const at::Tensor per = at::stack(at::_foreach_norm(grads, 2)).to(at::kDouble);
    local = per.mul(per).sum().item<double>();
  }
  at::Tensor total = at::scalar_tensor(local, at::kDouble);
  if (grad_shard_.is_cuda()) total = total.to(grad_shard_.device());
  comm_.all_reduce_sum(total);
  const double norm = std::sqrt(total.cpu().item<double>());
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm && !grads.empty()) {
    c10::NoGradGuard no_grad;
    at::_foreach_mul_(grads, max_norm / (norm + 1e-6));
  }
  return norm;
}

void ShardedOptimizer::step(double lr) {
  TORCH_CHECK(grad_shard_.defined(), "ShardedOptimizer: reduce_gradients() before step()");
  opt_->step(lr, owned_grads(owned_, has_grad_, ranges_, offset_, grad_shard_));
  all_gather_params();
}

void ShardedOptimizer::all_gather_params() {
  c10::NoGradGuard no_grad;
  const int world = comm_.world_size();
  const at::TensorOptions opts = params_.front().param.options().requires_grad(false);
  at::Tensor mine = at::zeros({segment_}, opts);
  for (size_t k : owned_) {
    mine.narrow(0, offset_[k], ranges_[k].size())
        .copy_(params_[k].param.detach().view(-1).narrow(0, ranges_[k].begin, ranges_[k].size()));
  }
  at::Tensor all = at::empty({segment_ * world}, opts);
  comm_.all_gather(all, mine);
  for (size_t k = 0; k < params_.size(); ++k) {
    if (!has_grad_[k]) continue;  // unchanged on every rank
    at::Tensor p = params_[k].param.detach().view(-1);
    for (int r = 0; r < world; ++r) {
      if (r == comm_.rank()) continue;
      const ShardRange piece = shard_range(p.numel(), world, r);
      if (piece.size() == 0) break;
      p.narrow(0, piece.begin, piece.size())
          .copy_(all.narrow(0, segment_ * r + offset_[k], piece.size()));
    }
  }
}

void ShardedOptimizer::zero_grad() {
  for (auto& p : params_)
    if (p.param.grad().defined()) p.param.mutable_grad().reset();
  grad_shard_ = at::Tensor();
}

std::map<std::string, at::Tensor> ShardedOptimizer::optimizer_shard() const {
  return opt_->state_dict();
}

void ShardedOptimizer::load_state_dict(const std::map<std::string, at::Tensor>& full_state) {
  std::map<std::string, at::Tensor> mine;
  for (size_t k : owned_) {
    for (const char* suffix : {".exp_avg", ".exp_avg_sq"}) {
      const std::string key = params_[k].name + suffix;
      auto it = full_state.find(key);
      TORCH_CHECK(it != full_state.end(), "optimizer state has no '", key,
                  "': the checkpoint was written for other trainable parameters (a different "
                  "method, LoRA targets or quantization config)");
      TORCH_CHECK(it->second.numel() == params_[k].param.numel(), "optimizer state '", key,
                  "' has ", it->second.numel(), " elements but the parameter has ",
                  params_[k].param.numel());
      mine[key] = it->second.reshape({-1}).narrow(0, ranges_[k].begin, ranges_[k].size());
    }
  }
  auto step = full_state.find("step");
  TORCH_CHECK(step != full_state.end(), "optimizer state has no 'step'");
  mine["step"] = step->second;
  TORCH_CHECK(full_state.size() == 2 * params_.size() + 1, "optimizer state has ",
              full_state.size(), " entries, expected ", 2 * params_.size() + 1,
              ": the checkpoint was written for other trainable parameters");
  opt_->load_state_dict(mine);
}

int64_t ShardedOptimizer::owned_state_bytes() const {
  int64_t n = 0;
  for (size_t k : owned_) n += 3 * ranges_[k].size();  // two moments and the reduced gradient
  return n * static_cast<int64_t>(sizeof(float));
}

}  // namespace qat::train
