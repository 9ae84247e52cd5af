#include "arcforge/eval/report_json.hpp"

namespace arcforge::eval {

nlohmann::json to_json(const VerificationReport& r) {
  return {{"accuracy", r.accuracy}, {"accuracy_std", r.accuracy_std}, {"threshold", r.threshold},
          {"val_at_far_1e-3", r.val_at_far}, {"val_std", r.val_std}, {"far", r.far},
          {"auc", r.auc}, {"eer", r.eer}, {"pairs", r.pairs}};
}

}  // namespace arcforge::eval
