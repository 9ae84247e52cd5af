#pragma once
// A face as JSON, the one shape the CLI (--json) and the HTTP service print:
// {"box": [x1,y1,x2,y2], "score", "landmarks"?: [[x,y] x5], "quality"?: {...}, "passes_quality"?,
//  "rejection"?, "embedding"?}. Non-finite pose angles (no landmarks) print as null.
#include <nlohmann/json.hpp>

#include "arcforge/pipeline/face_analyzer.hpp"

namespace arcforge::pipeline {

struct FaceJsonParts {
  bool landmarks = true;
  bool quality = false;
  bool embedding = false;
};

nlohmann::json face_to_json(const Face& face, FaceJsonParts parts = {});

}  // namespace arcforge::pipeline
