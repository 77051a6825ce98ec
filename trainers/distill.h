// Training losses over the model's head, chunked (trainers/head_loss.h): next-token
// cross-entropy, and distillation against a frozen teacher (QAD: the quantized student learns
// the unquantized model's next-token distribution rather than the data's one-hot tokens).
//
// Both are LossFunctions for the Trainer: the sum over the batch's target positions (labels !=
// -100, position t predicting labels[t + 1]), which the trainer divides by the global target
// count, so masked positions (prompts, packing boundaries) are excluded and the loss is
// normalised over ranks and micro-steps exactly as the cross-entropy is.
#pragma once

#include <memory>

#include "trainers/head_loss.h"
#include "trainers/trainer.h"

namespace qat::train {

// The model's output head when it is a plain linear map (a tied embedding, or a dense lm_head):
// the chunked path needs its weight. nullopt for any other head (e.g. a fake-quantized lm_head),
// for which the losses fall back to whole logits (head_loss_sum_unchunked).
std::optional<LinearHead> linear_head(models::LlamaForCausalLM& model);

// Cross-entropy to the next tokens, the student's head computed in chunks.
LossFunction chunked_cross_entropy(int64_t chunk_rows = 0);

// Distillation: (1 - ce_weight) * tau^2 KL(teacher || student) + ce_weight * CE per target
// position. `teacher` is frozen (no gradient, eval mode), on the student's device, with the same
// vocabulary; it runs under the same autocast as the student.
LossFunction distillation_loss(std::shared_ptr<models::LlamaForCausalLM> teacher,
                               const HeadLossOptions& options);

}  // namespace qat::train
