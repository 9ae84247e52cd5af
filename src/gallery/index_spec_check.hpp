#pragma once
// Range checks of an IndexSpec, shared by IndexSpec::from_json (values read from a database) and the
// VectorIndex constructor (values from the API), so neither can build an index FAISS would reject.
#include <string>

#include "arcforge/gallery/vector_index.hpp"

namespace arcforge::gallery {

// Throws InputError naming `where` and the field. dim > 0 also checks what depends on the vector
// size (pq_m must divide dim for ivfpq); dim == 0 skips that.
void check_index_spec(const IndexSpec& spec, int dim, const std::string& where);

}  // namespace arcforge::gallery
