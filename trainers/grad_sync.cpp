#include "trainers/grad_sync.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace qat::train {

GradSync::GradSync(const std::vector<NamedParam>& params, Communicator& comm, int64_t bucket_bytes)
    : params_(params), comm_(comm) {
  bucket_of_.resize(params_.size());
  offset_.resize(params_.size());
  arrived_.assign(params_.size(), false);
  // Reverse order: the last layers' gradients are ready first.
  std::vector<std::vector<size_t>> groups;
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const at::Tensor& p = params_[k].param;
    const int64_t nbytes = p.numel() * static_cast<int64_t>(p.element_size());
    const bool new_bucket = groups.empty() || bytes + nbytes > bucket_bytes ||
                            params_[groups.back().front()].param.scalar_type() != p.scalar_type();
    if (new_bucket) {
      groups.emplace_back();
      bytes = 0;
    }
    groups.back().push_back(k);
    bytes += nbytes;
  }
  for (size_t b = 0; b < groups.size(); ++b) {
    Bucket bucket;
    int64_t numel = 0;
    for (size_t k : groups[b]) {
      bucket_of_[k] = b;
      offset_[k] = static_cast<size_t>(numel);
      numel += params_[k].param.numel();
    }
    const at::Tensor& first = params_[groups[b].front()].param;
    bucket.flat = at::zeros({numel}, first.options().requires_grad(false));
    bucket.members = groups[b];
    buckets_.push_back(std::move(bucket));
  }
  for (size_t k = 0; k < params_.size(); ++k) {
    hooks_.push_back(
        params_[k].param.register_hook([this, k](const at::Tensor& grad) { on_grad(k, grad); }));
  }
}

GradSync::~GradSync() {
  // The hooks capture `this`: remove them, the model may outlive us.
  for (size_t k = 0; k < hooks_.size(); ++k) params_[k].param.remove_hook(hooks_[k]);
  for (auto& b : buckets_) {
    try {
      b.work.wait();
    } catch (...) {
    }
  }
}

void GradSync::prepare(bool last) {
  active_ = last && comm_.distributed();
  if (!active_) return;
  next_launch_ = 0;
  std::fill(arrived_.begin(), arrived_.end(), false);
  for (auto& b : buckets_) {
    b.pending = b.members.size();
    b.launched = false;
  }
}

void GradSync::on_grad(size_t k, const at::Tensor& grad) {
  if (!active_ || arrived_[k]) return;
  c10::NoGradGuard no_grad;
  Bucket& b = buckets_[bucket_of_[k]];
  const at::Tensor& p = params_[k].param;
  at::Tensor slot = b.flat.narrow(0, static_cast<int64_t>(offset_[k]), p.numel()).view(p.sizes());
  const at::Tensor& accumulated = p.grad();
  if (accumulated.defined()) {
    at::add_out(slot, accumulated, grad);
  } else {
    slot.copy_(grad);
  }
  arrived_[k] = true;
  if (--b.pending == 0) launch_ready();
}

void GradSync::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_++];
    b.work = comm_.all_reduce_sum_async(b.flat);
    b.launched = true;
  }
}

void GradSync::finish() {
  if (!active_) return;
  c10::NoGradGuard no_grad;
  // Parameters that got no gradient in this backward (unused this step) still take part: their
  // local accumulated gradient (or zeros) goes into the bucket so every rank reduces the same
  // sizes. A flag per parameter says whether any rank had a gradient: one that no rank had stays
  // without one, as in a single process (AdamW then leaves it untouched).
  at::Tensor had = at::zeros({static_cast<int64_t>(params_.size())}, at::kFloat);
  auto had_a = had.accessor<float, 1>();
  for (size_t k = 0; k < params_.size(); ++k) {
    const at::Tensor& p = params_[k].param;
    if (arrived_[k] || p.grad().defined()) had_a[static_cast<int64_t>(k)] = 1.0f;
    if (arrived_[k]) continue;
    Bucket& b = buckets_[bucket_of_[k]];
    at::Tensor slot = b.flat.narrow(0, static_cast<int64_t>(offset_[k]), p.numel()).view(p.sizes());
    if (p.grad().defined()) {
      slot.copy_(p.grad());
    } else {
      slot.zero_();
    }
    arrived_[k] = true;
    --b.pending;
  }
  launch_ready();
  if (!buckets_.empty() && buckets_.front().flat.is_cuda())
    had = had.to(buckets_.front().flat.device());
  PendingWork flags = comm_.all_reduce_sum_async(had);
  for (auto& b : buckets_) b.work.wait();
  flags.wait();
  had = had.cpu();
  auto had_sum = had.accessor<float, 1>();
  for (size_t k = 0; k < params_.size(); ++k) {
    const at::Tensor& p = params_[k].param;
    if (had_sum[static_cast<int64_t>(k)] == 0.0f) {
      if (p.grad().defined()) p.mutable_grad().reset();
      continue;
    }
    const Bucket& b = buckets_[bucket_of_[k]];
    at::Tensor sum = b.flat.narrow(0, static_cast<int64_t>(offset_[k]), p.numel()).view(p.sizes());
    if (p.grad().defined()) {
      p.mutable_grad().copy_(sum);
    } else {
      p.mutable_grad() = sum.clone();
    }
  }
  active_ = false;
}

}  // namespace qat::train
