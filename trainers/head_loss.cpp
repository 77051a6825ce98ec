#include "trainers/head_loss.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

namespace qat::train {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_options(const HeadLossOptions& o, bool has_teacher) {
  TORCH_CHECK(o.temperature > 0, "distill.temperature must be > 0, got ", o.temperature);
  TORCH_CHECK(o.ce_weight >= 0 && o.ce_weight <= 1, "distill.ce_weight must be in [0, 1], got ",
              o.ce_weight);
  TORCH_CHECK(o.chunk_rows >= 0, "the loss chunk size must be >= 0 (0: automatic), got ",
              o.chunk_rows);
  TORCH_CHECK(has_teacher || o.ce_weight == 1,
              "a distillation loss (ce_weight < 1) needs the teacher's logits");
}

// dloss/dz of one chunk (rows, vocab) in float32, adding the chunk's loss to `loss`.
// z: student logits, u: teacher logits (undefined when w == 1), y: targets. `loss` is a float64
// scalar on the logits' device (no host sync per chunk).
at::Tensor chunk_gradient(const at::Tensor& z, const at::Tensor& u, const at::Tensor& y,
                          const HeadLossOptions& o, at::Tensor& loss) {
  const double w = o.ce_weight, tau = o.temperature;
  at::Tensor g;
  if (w > 0) {
    // CE: -log softmax(z)[y]; gradient softmax(z) - onehot(y).
    const at::Tensor log_p = at::log_softmax(z, 1);
    loss.sub_(log_p.gather(1, y.unsqueeze(1)).sum().to(at::kDouble) * w);
    g = log_p.exp_();
    g.scatter_add_(1, y.unsqueeze(1), at::full({y.size(0), 1}, -1.0f, g.options()));
    if (w != 1) g.mul_(w);
  }
  if (w < 1) {
    // KD: tau^2 KL(q || p) with p, q at temperature tau; gradient tau (p - q).
    const at::Tensor log_p = at::log_softmax(z / tau, 1);
    const at::Tensor log_q = at::log_softmax(u / tau, 1);
    const at::Tensor q = log_q.exp();
    loss.add_((q * (log_q - log_p)).sum().to(at::kDouble) * ((1 - w) * tau * tau));
    at::Tensor kd = log_p.exp().sub_(q).mul_((1 - w) * tau);
    g = g.defined() ? g.add_(kd) : kd;
  }
  return g;
}

at::Tensor linear_logits(const at::Tensor& h, const LinearHead& head) {
  return at::linear(h, head.weight, head.bias).to(at::kFloat);
}

// The chunked loss as one autograd node: the forward computes the gradients chunk by chunk and
// keeps them; the backward scales them by the incoming gradient.
struct ChunkedHeadLoss : torch::autograd::Function<ChunkedHeadLoss> {
  // Absent tensors (no bias, no teacher) come as empty ones: an autograd Function's inputs must
  // all be defined.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden,
                            const at::Tensor& weight, at::Tensor bias, const at::Tensor& targets,
                            const at::Tensor& teacher_hidden, const at::Tensor& teacher_weight,
                            at::Tensor teacher_bias, double temperature, double ce_weight,
                            int64_t chunk_rows) {
    if (bias.numel() == 0) bias = at::Tensor();
    if (teacher_bias.numel() == 0) teacher_bias = at::Tensor();
    const HeadLossOptions o{temperature, ce_weight, chunk_rows};
    const LinearHead head{weight, bias};
    const LinearHead teacher_head{teacher_weight, teacher_bias};
    const int64_t rows = hidden.size(0);
    const int64_t chunk = head_loss_chunk_rows(weight.size(0), o);
    at::Tensor grad_h = hidden.requires_grad() ? at::empty_like(hidden) : at::Tensor();
    at::Tensor grad_w = weight.requires_grad() ? at::zeros_like(weight) : at::Tensor();
    at::Tensor grad_b =
        bias.defined() && bias.requires_grad() ? at::zeros_like(bias) : at::Tensor();
    at::Tensor loss = at::zeros({}, hidden.options().dtype(at::kDouble));
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t n = std::min(chunk, rows - r0);
      const at::Tensor h = hidden.narrow(0, r0, n);  // (n, hidden)
      const at::Tensor u = ce_weight < 1
                               ? linear_logits(teacher_hidden.narrow(0, r0, n), teacher_head)
                               : at::Tensor();  // (n, vocab)
      const at::Tensor g =
          chunk_gradient(linear_logits(h, head), u, targets.narrow(0, r0, n), o, loss);
      const at::Tensor gm = g.to(h.scalar_type());  // (n, vocab) in the matmul dtype
      if (grad_h.defined()) {
        at::Tensor rows_out = grad_h.narrow(0, r0, n);  // (n, hidden), contiguous rows
        at::mm_out(rows_out, gm, weight.to(gm.scalar_type()));
      }
      if (grad_w.defined()) {
        if (grad_w.scalar_type() == gm.scalar_type())
          grad_w.addmm_(gm.t(), h);
        else
          grad_w.add_(at::mm(gm.t(), h));
      }
      if (grad_b.defined()) grad_b.add_(g.sum(0));
    }
    ctx->save_for_backward({grad_h, grad_w, grad_b});
    return loss.to(at::kFloat);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& go = grad_outputs[0];
    auto scaled = [&](const at::Tensor& g) { return g.defined() ? g * go.to(g.dtype()) : g; };
    return {scaled(saved[0]), scaled(saved[1]), scaled(saved[2]), at::Tensor(), at::Tensor(),
            at::Tensor(),     at::Tensor(),     at::Tensor(),     at::Tensor(), at::Tensor()};
  }
};

}  // namespace

int64_t head_loss_chunk_rows(int64_t vocab, const HeadLossOptions& options) {
  if (options.chunk_rows > 0) return options.chunk_rows;
  // About 2^23 logits (32 MB in float32) per chunk: a few such (rows, vocab) buffers live at
  // once (logits, their softmax, the teacher's), and rows in the hundreds keep the matmuls
  // efficient.
  constexpr int64_t kLogitsPerChunk = int64_t{1} << 23;
  return std::max<int64_t>(1, kLogitsPerChunk / std::max<int64_t>(1, vocab));
}

at::Tensor head_loss_sum(const at::Tensor& hidden, const LinearHead& head,
                         const at::Tensor& targets, const std::optional<TeacherRows>& teacher,
                         const HeadLossOptions& options) {
  check_options(options, teacher.has_value());
  TORCH_CHECK(hidden.dim() == 2 && head.weight.dim() == 2 && hidden.size(1) == head.weight.size(1),
              "head_loss_sum: hidden (rows, d) and head weight (vocab, d) expected, got ",
              hidden.sizes(), " and ", head.weight.sizes());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0),
              "head_loss_sum: one target per hidden row expected, got ", targets.sizes(), " for ",
              hidden.size(0), " rows");
  const at::Tensor none = at::empty({0}, hidden.options().requires_grad(false));
  at::Tensor th = none, tw = none, tb = none;
  if (teacher && options.ce_weight < 1) {
    TORCH_CHECK(teacher->hidden.dim() == 2 && teacher->hidden.size(0) == hidden.size(0),
                "head_loss_sum: the teacher needs the same ", hidden.size(0), " rows, got ",
                teacher->hidden.sizes());
    TORCH_CHECK(teacher->head.weight.size(0) == head.weight.size(0),
                "distillation needs the same vocabulary: the student has ", head.weight.size(0),
                " tokens, the teacher ", teacher->head.weight.size(0));
    th = teacher->hidden.detach();
    tw = teacher->head.weight.detach();
    tb = teacher->head.bias.defined() ? teacher->head.bias.detach() : none;
  }
  return ChunkedHeadLoss::apply(hidden.contiguous(), head.weight,
                                head.bias.defined() ? head.bias : none, targets, th, tw, tb,
                                options.temperature, options.ce_weight, options.chunk_rows);
}

at::Tensor head_loss_sum_unchunked(const at::Tensor& logits, const at::Tensor& targets,
                                   const at::Tensor& teacher_logits,
                                   const HeadLossOptions& options) {
  check_options(options, teacher_logits.defined());
  const double w = options.ce_weight, tau = options.temperature;
  const at::Tensor z = logits.to(at::kFloat);
  at::Tensor loss;
  if (w > 0) {
    loss = at::cross_entropy_loss(z, targets, {}, at::Reduction::Sum, -100);
    if (w != 1) loss = loss * w;
  }
  if (w < 1) {
    const at::Tensor log_p = at::log_softmax(z / tau, 1);
    const at::Tensor log_q = at::log_softmax(teacher_logits.to(at::kFloat).detach() / tau, 1);
    const at::Tensor kd = (log_q.exp() * (log_q - log_p)).sum() * ((1 - w) * tau * tau);
    loss = loss.defined() ? loss + kd : kd;
  }
  return loss;
}

}  // namespace qat::train
