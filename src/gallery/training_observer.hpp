#pragma once
// A seam for tests: a function called at the start of every ivfpq training's k-means
// (IvfPqTraining::run), on the thread that runs it. A test uses it to act while a training is
// under way (a search from another thread must finish), instead of racing a clock. Unset in
// production; set it only while no training can run.
#include <functional>

namespace arcforge::gallery::testing {

void set_training_observer(std::function<void()> observer);

}  // namespace arcforge::gallery::testing
