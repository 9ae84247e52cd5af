#pragma once
// 5-point face alignment to the ArcFace template, as InsightFace's face_align.norm_crop does it:
// a least-squares similarity from the detected landmarks to the template, then cv2.warpAffine.
#include <span>

#include "arcforge/image/image.hpp"
#include "arcforge/pipeline/geometry.hpp"

namespace arcforge::pipeline {

// InsightFace's arcface_dst for a 112x112 crop:
// (38.2946,51.6963) (73.5318,51.5014) (56.0252,71.7366) (41.5493,92.3655) (70.7299,92.2041).
const Landmarks5& arcface_template_112();

// The template for a width x height crop, following InsightFace's estimate_norm:
// - square, size % 112 == 0: template * size / 112 (112, 224, ...);
// - square, any other size: template * size / 128 with x += 8 * size / 128 (the 128 "+8 px" variant);
// - width : height = 96 : 112 with height % 112 == 0 (the old 112x96 crop): template * height / 112
//   with x -= 8 * height / 112.
// Throws ConfigError on a non-positive size or any other aspect ratio.
Landmarks5 arcface_template(int width, int height);

// The least-squares similarity (uniform scale, rotation, translation; never a reflection) taking
// `source` onto `destination`: Umeyama's method, i.e. skimage.transform.SimilarityTransform.estimate
// as InsightFace calls it. In 2-D it has the closed form used here. Throws InputError when the two
// spans differ in length, hold fewer than 2 points, the source points all coincide, or the best
// similarity collapses everything to a point (destination points all equal).
Affine2x3 estimate_similarity(std::span<const Point2> source, std::span<const Point2> destination);

// The map from photo pixels to the aligned width x height crop.
Affine2x3 alignment_transform(const Landmarks5& landmarks, int width = 112, int height = 112);

// The aligned crop: alignment_transform, then warp_affine with a black border (norm_crop).
image::Image align_face(const image::Image& photo, const Landmarks5& landmarks, int width = 112, int height = 112);

}  // namespace arcforge::pipeline
