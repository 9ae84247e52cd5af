#pragma once
// Annotated copies of photos: boxes, scores and landmarks drawn in, for checking detections by eye.
#include <vector>

#include "arcforge/pipeline/detection.hpp"

namespace arcforge::pipeline {

// Each box as a green rectangle (thickness grows with the photo), each landmark as a filled dot:
// eyes blue/red, nose green, mouth corners magenta/yellow (the order is visible this way).
image::Image draw_detections(const image::Image& photo, const std::vector<Detection>& detections);

}  // namespace arcforge::pipeline
