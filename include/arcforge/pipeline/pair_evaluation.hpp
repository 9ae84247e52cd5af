#pragma once
// Verification of a pair list (LFW pairs.txt, CSV) on photos: every file is detected, aligned and
// embedded once through a FaceAnalyzer, then the pairs are scored with the 10-fold protocol.
#include <cstdint>
#include <string>
#include <vector>

#include "arcforge/data/verification_set.hpp"
#include "arcforge/eval/verification.hpp"
#include "arcforge/pipeline/face_analyzer.hpp"

namespace arcforge::pipeline {

enum class FaceChoice { centre, largest };
FaceChoice parse_face_choice(const std::string& text);  // "center"/"centre" | "largest"

struct PairEvalOptions {
  // Which face of a multi-face photo: the one nearest the photo centre (LFW photos are centred on
  // their subject) or the largest.
  FaceChoice choice = FaceChoice::centre;
  // Photos are processed by this many worker threads at once (each runtime call then uses the
  // analyzer's own thread count, normally 1).
  int workers = 1;
  eval::VerificationOptions verification;
};

struct PairEvalResult {
  eval::VerificationReport report;
  std::vector<float> scores;                // one per pair
  int64_t images = 0;
  // Photos where the detector found no face. They are aligned with the mean landmark positions
  // (relative to the photo size) of the photos where it did, so that every pair is scored.
  std::vector<std::string> no_face;
  double seconds = 0;                       // wall time of detection + embedding
};

// Throws InputError naming the first file that does not decode.
PairEvalResult evaluate_pair_list(const FaceAnalyzer& analyzer, const data::PairList& pairs,
                                  const PairEvalOptions& options = {});

}  // namespace arcforge::pipeline
