#include "trainers/distill.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "qat/models/llama.h"
#include "qat/nn/linear.h"

namespace qat::train {
namespace {

// The target positions of a batch, flattened over (rows, positions 0..T-2): where the next
// label is not -100.
struct TargetRows {
  at::Tensor index;    // (n) int64 into the flattened (B * (T - 1)) positions
  at::Tensor targets;  // (n) the next tokens
};

TargetRows target_rows(const at::Tensor& labels) {
  const at::Tensor next = labels.narrow(1, 1, labels.size(1) - 1).reshape({-1});
  const at::Tensor index = next.ne(-100).nonzero().squeeze(1);
  return {index, next.index_select(0, index)};
}

// The final hidden states (after the last norm) at the target positions: (n, hidden).
at::Tensor hidden_rows(models::LlamaForCausalLM& model, const Batch& batch,
                       const at::Tensor& index) {
  const at::Tensor h = model.model().forward(batch.tokens, nullptr, std::nullopt, batch.packed);
  const int64_t d = h.size(-1);
  return h.narrow(1, 0, h.size(1) - 1).reshape({-1, d}).index_select(0, index);
}

at::Tensor loss_sum(models::LlamaForCausalLM& student, models::LlamaForCausalLM* teacher,
                    const Batch& batch, const HeadLossOptions& options) {
  const TargetRows rows = target_rows(batch.labels);
  const at::Tensor hidden = hidden_rows(student, batch, rows.index);
  at::Tensor teacher_hidden;
  if (teacher) {
    c10::NoGradGuard no_grad;
    teacher_hidden = hidden_rows(*teacher, batch, rows.index);
  }
  const std::optional<LinearHead> head = linear_head(student);
  const std::optional<LinearHead> teacher_head =
      teacher ? linear_head(*teacher) : std::optional<LinearHead>();
  if (head && (!teacher || teacher_head)) {
    std::optional<TeacherRows> t;
    if (teacher) t = TeacherRows{teacher_hidden, *teacher_head};
    return head_loss_sum(hidden, *head, rows.targets, t, options);
  }
  // A head that is not a plain linear map (e.g. a fake-quantized lm_head): whole logits.
  at::Tensor teacher_logits;
  if (teacher) {
    c10::NoGradGuard no_grad;
    teacher_logits = teacher->logits(teacher_hidden);
  }
  return head_loss_sum_unchunked(student.logits(hidden), rows.targets, teacher_logits, options);
}

}  // namespace

std::optional<LinearHead> linear_head(models::LlamaForCausalLM& model) {
  const std::shared_ptr<nn::LinearBase> head = model.lm_head();
  if (!head) return LinearHead{model.model().embed_tokens()->weight, at::Tensor()};
  if (const auto dense = std::dynamic_pointer_cast<nn::Linear>(head)) {
    return LinearHead{dense->weight(), dense->bias()};
  }
  return std::nullopt;
}

LossFunction chunked_cross_entropy(int64_t chunk_rows) {
  HeadLossOptions options;
  options.chunk_rows = chunk_rows;
  return [options](models::LlamaForCausalLM& model, const Batch& batch) {
    return loss_sum(model, nullptr, batch, options);
  };
}

LossFunction distillation_loss(std::shared_ptr<models::LlamaForCausalLM> teacher,
                               const HeadLossOptions& options) {
  TORCH_CHECK(teacher, "distillation_loss: no teacher model");
  for (const auto& p : teacher->parameters()) p.set_requires_grad(false);
  teacher->eval();
  return [teacher, options](models::LlamaForCausalLM& student, const Batch& batch) {
    TORCH_CHECK(teacher->config().vocab_size == student.config().vocab_size,
                "distillation needs the same vocabulary: the student has ",
                student.config().vocab_size, " tokens, the teacher ", teacher->config().vocab_size);
    return loss_sum(student, teacher.get(), batch, options);
  };
}

}  // namespace qat::train
