#pragma once
// The InsightFace / LFW verification protocol on scored pairs.
//   - accuracy: 10 folds (contiguous, unshuffled, as sklearn KFold in InsightFace's verification.py);
//     on each fold the threshold that is best on the other nine is applied; mean and std over folds.
//   - VAL@FAR: per fold, the threshold giving FAR = target on the training folds (interpolated),
//     VAL measured on the test fold; mean and std.
//   - AUC and EER over all pairs from the ROC curve.
// Scores are cosine similarities of L2-normalised embeddings (higher = more alike). InsightFace works
// on squared distances d = 2 - 2 cos over a grid d in [0, 4) step 0.01; we use the same grid mapped
// to cosine, so thresholds agree with InsightFace's.
#include <cstdint>
#include <vector>

namespace arcforge::eval {

struct VerificationOptions {
  int folds = 10;
  double far_target = 1e-3;
};

struct VerificationReport {
  double accuracy = 0;      // mean over folds
  double accuracy_std = 0;  // std over folds (population std, as numpy's default)
  double threshold = 0;     // mean best cosine threshold over folds
  double val_at_far = 0;    // mean VAL at far_target over folds
  double val_std = 0;
  double far = 0;           // mean achieved FAR on the test folds
  double auc = 0;
  double eer = 0;
  int64_t pairs = 0;
  std::vector<double> fold_accuracies;
};

// Throws InputError when sizes differ, a score is not finite, or there are fewer pairs than folds.
// Also InputError when a fold's test or training part lacks same or different pairs (VAL/FAR
// undefined), ConfigError when folds < 1 or far_target is outside [0, 1]. folds == 1 evaluates on
// the training pairs themselves, as InsightFace's LFold.
VerificationReport evaluate_verification(const std::vector<float>& scores,
                                         const std::vector<bool>& same,
                                         const VerificationOptions& options = {});

}  // namespace arcforge::eval
