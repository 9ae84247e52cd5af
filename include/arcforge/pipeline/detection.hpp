#pragma once
// What a face detector returns, and the post-processing every detector shares: non-maximum
// suppression, the max-faces / min-size selection, and the letterbox that maps a photo into the
// detector's input and the detections back.
#include <cstdint>
#include <vector>

#include "arcforge/image/image.hpp"
#include "arcforge/pipeline/geometry.hpp"

namespace arcforge::pipeline {

struct Detection {
  Box box;                   // photo pixels, x1 y1 x2 y2
  float score = 0;
  bool has_landmarks = false;
  Landmarks5 landmarks{};    // photo pixels; meaningful only when has_landmarks
};

struct DetectorOptions {
  float score_threshold = 0.5f;  // InsightFace's det_thresh
  float nms_iou = 0.4f;          // InsightFace's SCRFD nms_thresh
  int input_width = 640;         // detector input (SCRFD: any multiple of 32; fixed-size models ignore it)
  int input_height = 640;
  int max_faces = 0;             // 0 = all; otherwise the largest, most central ones (InsightFace's max_num)
  float min_face_size = 0;       // faces whose shorter box side is below this (photo pixels) are dropped
};

// Greedy NMS in descending score order with InsightFace's pixel-inclusive areas ((x2-x1+1)*(y2-y1+1)):
// a box is dropped when its IoU with a kept box exceeds `iou_threshold`. Returns kept detections,
// highest score first.
std::vector<Detection> non_maximum_suppression(std::vector<Detection> detections, float iou_threshold);

// Applies min_face_size, then max_faces the way InsightFace's SCRFD.detect does for max_num: by box
// area minus twice the squared offset of the box centre from the photo centre.
std::vector<Detection> select_faces(std::vector<Detection> detections, const DetectorOptions& options,
                                    int photo_width, int photo_height);

// The largest face (by box area); the one verify uses by default. Throws InputError when empty.
const Detection& largest_face(const std::vector<Detection>& detections, const std::string& name_for_errors);

// InsightFace's SCRFD input: the photo resized (bilinear) with its aspect ratio kept so that it fits
// width x height, pasted at the top-left of a black canvas. `scale` = resized / original.
struct Letterbox {
  image::Image canvas;  // width x height, 3 channels, RGB
  float scale = 1;
};
Letterbox letterbox(const image::Image& photo, int width, int height);

// Photo -> float NCHW planes for a detector: value = (pixel - mean) / std per channel, channels in
// RGB order or swapped to BGR. Appends to `out` (so a batch is built by repeated calls).
void append_planar(const image::Image& rgb, bool bgr, float mean, float std, std::vector<float>& out);

// Maps detections found on a letterboxed canvas back to photo pixels (divide by scale), clipping
// nothing: boxes may extend past the photo edge as InsightFace's do.
void unletterbox(std::vector<Detection>& detections, float scale);

// What every detector does after decoding: unletterbox (scale 1: nothing), NMS at options.nms_iou,
// then select_faces.
std::vector<Detection> finish_detections(std::vector<Detection> found, float scale, const DetectorOptions& options,
                                         int photo_width, int photo_height);

}  // namespace arcforge::pipeline
