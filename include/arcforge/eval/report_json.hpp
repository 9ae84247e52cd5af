#pragma once
// The JSON shape of a verification report, shared by `arcforge eval --json`, the trainer's metrics
// and `arcforge train --json`.
#include <nlohmann/json.hpp>

#include "arcforge/eval/verification.hpp"

namespace arcforge::eval {

// {"accuracy","accuracy_std","threshold","val_at_far_1e-3","val_std","far","auc","eer","pairs"}
nlohmann::json to_json(const VerificationReport& report);

}  // namespace arcforge::eval
