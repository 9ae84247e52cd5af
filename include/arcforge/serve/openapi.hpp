#pragma once
// The OpenAPI 3.0 description served at GET /openapi.json.
#include <nlohmann/json.hpp>

namespace arcforge::serve {

nlohmann::json openapi_document();

}  // namespace arcforge::serve
