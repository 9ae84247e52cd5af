#pragma once
// Face quality signals and the gate that turns them into accept / reject: detector confidence,
// face size, head pose from the 5 landmarks, and sharpness of the aligned crop.
#include <string>

#include "arcforge/image/image.hpp"
#include "arcforge/pipeline/geometry.hpp"

namespace arcforge::pipeline {

// The usual blur score: variance of the Laplacian of the gray image, i.e.
// cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var(). Gray uses BT.601 weights
// (0.299, 0.587, 0.114) in OpenCV's 15-bit fixed point, so it is bit-identical to cvtColor; the
// kernel is [0 1 0; 1 -4 1; 0 1 0] (cv2.Laplacian ksize=1) with BORDER_REFLECT_101; the variance is
// the population one. Higher is sharper; the scale depends on the content and the crop size, so
// compare scores of crops of one size (the aligned 112x112). Throws InputError on an empty image.
double laplacian_variance(const image::Image& image);

// Head pose in degrees from the 5 landmarks.
//   roll:  angle of the eye line, atan2(right_eye.y - left_eye.y, right_eye.x - left_eye.x). Positive
//          when the image-right eye is lower (head tilted clockwise on screen); rotating the
//          landmarks by r (clockwise on screen, y down) adds r. The ArcFace template reads -0.32.
//   The other two are measured in the face's own frame (origin at the eye midpoint, x along the eye
//   line, y perpendicular, lengths in inter-ocular distances IOD), so they do not depend on roll,
//   position or scale.
//   yaw:   the nose tip's horizontal offset from the face midline (the line from the eye midpoint to
//          the mouth midpoint, taken at the nose's height), in IOD: yaw = atan(offset / 0.5).
//          Positive when the nose points to image right. Mirroring the face flips its sign.
//   pitch: t = nose depth below the eye line as a fraction of the eye-to-mouth distance; frontal
//          faces have t ~ 0.495 (the template's). pitch = atan((0.495 - t) * 1.155 / 0.5), positive
//          when the face looks up (the nose tip climbs toward the eyes).
// Both come from a rigid model: a nose tip 0.5 IOD in front of the eye and mouth plane, whose
// sideways (vertical) shift is depth * tan(angle) once the observed IOD (eye-mouth height, 1.155 IOD
// on the template) has absorbed cos(angle). Limits: a heuristic, good to ~10 degrees for moderate
// poses on typical faces; individual anatomy (nose length, face height) shifts it, expression moves
// the mouth, and beyond ~60 degrees the detector's landmarks themselves stop being reliable. Yaw and
// pitch are estimated independently (no coupling terms).
// Landmarks a detector can produce on a false or extreme detection do not throw: with the mouth
// midpoint on or above the eye line, pitch is 90 and yaw is the nose against the eye midpoint; with
// both eyes on one point, yaw = pitch = 90 and roll 0. Either passes the default gate (limits 90)
// and fails any stricter one. Throws InputError only on a non-finite landmark.
struct Pose {
  double yaw = 0, pitch = 0, roll = 0;
};
Pose estimate_pose(const Landmarks5& landmarks);

struct FaceQuality {
  double detector_score = 0;
  double face_size = 0;  // min(box width, box height) in photo pixels
  Pose pose;
  double blur = 0;       // laplacian_variance of the aligned crop
};

// Thresholds; the defaults accept everything.
struct QualityGate {
  double min_detector_score = 0, min_face_size = 0, max_abs_yaw = 90, max_abs_pitch = 90, min_blur = 0;
};

// Empty when the face passes the gate; otherwise every failed check, "; "-separated, e.g.
// "face 31 px < 40 px; yaw 52 deg > 45 deg". A NaN signal fails its check.
std::string quality_rejection(const FaceQuality& quality, const QualityGate& gate);

// Parses --min-quality text: comma-separated key=value with keys score (min detector score), size
// (min face px), yaw and pitch (max |angle| in degrees), blur (min Laplacian variance), e.g.
// "score=0.6,size=40,yaw=45,pitch=30,blur=50". Keys left out keep the permissive default; empty
// text is the default gate. Throws ConfigError on an unknown or repeated key, a missing '=', or a
// value that is not a finite number >= 0 (angles also <= 180).
QualityGate parse_quality_gate(const std::string& text);

}  // namespace arcforge::pipeline
