// Service: the gallery, the models and the limits that the handlers share.
#include "service.hpp"

#include "arcforge/common/error.hpp"
#include "arcforge/serve/http_error.hpp"
#include "arcforge/serve/request_parsing.hpp"

namespace arcforge::serve {

std::string RequestView::name(const std::string& capture, const std::string& what) const {
  const std::string& value = params.at(capture);
  gallery::check_name(what, value);
  return value;
}

nlohmann::json RequestView::body() const { return parse_json_object(http.body); }

std::string RequestView::query(const std::string& key, const std::string& fallback) const {
  return http.has_param(key.c_str()) ? http.get_param_value(key.c_str()) : fallback;
}

Service::Service(ServerOptions options_in, std::shared_ptr<const pipeline::FaceAnalyzer> analyzer_in)
    : options(std::move(options_in)),
      gallery(gallery::Gallery::open(options.db)),
      analyzer(std::move(analyzer_in)),
      limiter(options.max_concurrent) {
  const int dim = embedding_size() > 0 ? embedding_size() : options.dim;
  if (!gallery.has_collection(options.collection)) {
    gallery::IndexSpec spec;
    spec.kind = gallery::parse_index_kind(options.index);
    gallery.create_collection(options.collection, dim, spec);
  } else if (analyzer && gallery.collection(options.collection).dim != dim) {
    throw InputError(file_message(options.db, "collection \"" + options.collection + "\" holds " +
                                                  std::to_string(gallery.collection(options.collection).dim) +
                                                  "-dim embeddings but the recognizer gives " + std::to_string(dim) +
                                                  ": choose another --collection or recognizer"));
  }
}

int Service::embedding_size() const {
  return analyzer && analyzer->recognizer() ? analyzer->recognizer()->embedding_size() : 0;
}

int Service::collection_dim(const std::string& collection) {
  {
    std::lock_guard<std::mutex> lock(dims_mutex_);
    const auto it = dims_.find(collection);
    if (it != dims_.end()) return it->second;
  }
  if (!gallery.has_collection(collection)) throw HttpError(404, "collection \"" + collection + "\" not found");
  const int dim = gallery.collection(collection).dim;
  remember_dim(collection, dim);
  return dim;
}

void Service::remember_dim(const std::string& collection, int dim) {
  std::lock_guard<std::mutex> lock(dims_mutex_);
  dims_[collection] = dim;
}

std::string dump_json(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json metadata_json(const std::string& text) {
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
  return parsed.is_discarded() ? nlohmann::json(text) : parsed;
}

}  // namespace arcforge::serve
