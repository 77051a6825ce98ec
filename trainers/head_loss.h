// The loss over a language model's output head, computed in chunks of target positions so that
// the (positions, vocab) logits of a whole batch, their softmax and their gradient never sit in
// memory at once: cross-entropy against the next tokens, and distillation (KD) against a frozen
// teacher's next-token distribution, or a weighted mix of both.
//
// For target rows i (the positions whose label is not -100), student logits z_i = h_i W^T + b,
// teacher logits u_i (same vocabulary), temperature tau and cross-entropy weight w in [0, 1]:
//
//   p_i = softmax(z_i / tau)     q_i = softmax(u_i / tau)        (student, teacher)
//   KD_i = tau^2 * KL(q_i || p_i) = tau^2 * sum_v q_iv (log q_iv - log p_iv)
//   CE_i = -log softmax(z_i)[y_i]
//   loss = sum_i (1 - w) KD_i + w CE_i
//
// tau^2 keeps the gradient's size independent of tau (Hinton et al., 2015):
//   dKD_i/dz_i = tau (p_i - q_i)        dCE_i/dz_i = softmax(z_i) - onehot(y_i)
// so with G = dloss/dz (rows, vocab) for one chunk: dloss/dh = G W, dloss/dW = G^T h,
// dloss/db = sum_i G_i. Each chunk's logits are formed, its G computed and multiplied out before
// the next chunk starts; the forward returns the summed loss and keeps dloss/dh and dloss/dW
// (the size of h and W) for the backward, which scales them by the incoming gradient. Logits
// and their softmax are float32 whatever the matmul dtype; chunk losses are summed in float64.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace qat::train {

// A linear output head: logits = hidden W^T (+ b). W (vocab, hidden); b (vocab) or undefined.
struct LinearHead {
  at::Tensor weight;
  at::Tensor bias;
};

struct HeadLossOptions {
  double temperature = 1.0;  // KD temperature tau (> 0)
  double ce_weight = 1.0;    // w: 1 = cross-entropy only, 0 = KD only (needs a teacher)
  int64_t chunk_rows = 0;    // target rows per chunk; 0: about 8M logits per chunk (32 MB fp32)
};

// The teacher's side of KD: its final hidden states for the same target rows, and its head.
struct TeacherRows {
  at::Tensor hidden;  // (rows, teacher hidden), no gradient
  LinearHead head;
};

// Sum over rows of the loss above. `hidden` (rows, hidden) are the student's final hidden states
// at the target rows only, `targets` (rows) their next tokens (all valid, no -100). `teacher` is
// required when ce_weight < 1. Differentiable with respect to `hidden`, `head.weight` and
// `head.bias` (whichever require grad). Returns a float32 scalar.
at::Tensor head_loss_sum(const at::Tensor& hidden, const LinearHead& head,
                         const at::Tensor& targets, const std::optional<TeacherRows>& teacher,
                         const HeadLossOptions& options);

// The same loss from whole logits (rows, vocab) with plain autograd: the unchunked reference,
// and the path for heads that are not a plain linear map (e.g. a fake-quantized lm_head).
at::Tensor head_loss_sum_unchunked(const at::Tensor& logits, const at::Tensor& targets,
                                   const at::Tensor& teacher_logits,
                                   const HeadLossOptions& options);

// The chunk size head_loss_sum uses for this vocabulary and options.
int64_t head_loss_chunk_rows(int64_t vocab, const HeadLossOptions& options);

}  // namespace qat::train
