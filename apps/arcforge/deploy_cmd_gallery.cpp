// `arcforge gallery create|enroll|search|verify|list|remove|export|import|stats --db FILE`.
// Photos go through the face pipeline (largest face); the gallery stores and searches embeddings.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/common/parallel.hpp"
#include "arcforge/common/progress.hpp"
#include "arcforge/gallery/face_sample.hpp"
#include "arcforge/gallery/gallery.hpp"
#include "face_cli.hpp"
#include "gallery_cli.hpp"

namespace arcforge::cli {
namespace {

namespace fs = std::filesystem;
using gallery::Gallery;
using nlohmann::json;

struct GalleryArgs {
  std::string db, collection = "default";
  bool json = false;
};

struct CreateArgs {
  int dim = 512;
  std::string index = "flat";
  int hnsw_m = 32, ef_search = 64, nlist = 0, nprobe = 16, pq_m = 64;
};

struct PhotoArgs {
  FaceModelArgs models;
  std::string person, folder, metadata = "{}";
  std::vector<std::string> images;
  int k = 5;
  float threshold = kDefaultVerifyThreshold;
  std::string over = "persons";
};

void add_db_options(CLI::App* cmd, GalleryArgs& g) {
  cmd->add_option("--db", g.db, "Gallery database file (SQLite)")->required();
  cmd->add_option("--collection", g.collection, "Collection name");
  cmd->add_flag("--json", g.json, "Print one JSON object");
}

const std::vector<std::string> kImageExtensions = {".jpg", ".jpeg", ".png", ".webp"};

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::find(kImageExtensions.begin(), kImageExtensions.end(), ext) != kImageExtensions.end();
}

// The sample a photo gives: its largest face, embedded, with the photo's hash.
gallery::SampleInput sample_from_photo(const pipeline::FaceAnalyzer& analyzer, const std::string& file, pipeline::Face* face) {
  const pipeline::Photo photo = analyzer.load_photo(file);
  *face = analyzer.analyze_largest(photo);
  gallery::SampleInput s = gallery::sample_from_face(*face, *photo.encoded);
  s.metadata = json{{"file", fs::path(file).filename().string()}}.dump();
  return s;
}

// Opens the gallery and makes sure the collection exists; a missing one is created with `dim` and
// a flat index (enrolling into a new database needs no `create` first).
Gallery open_for_writing(const GalleryArgs& g, int dim) {
  Gallery gallery = Gallery::open(g.db);
  if (!gallery.has_collection(g.collection)) {
    gallery.create_collection(g.collection, dim);
    if (!g.json) std::cerr << "gallery: created collection \"" << g.collection << "\" (" << dim << "-d, flat)\n";
  }
  return gallery;
}

void run_create(const GalleryArgs& g, const CreateArgs& c) {
  gallery::IndexSpec spec;
  spec.kind = gallery::parse_index_kind(c.index);
  spec.hnsw_m = c.hnsw_m;
  spec.hnsw_ef_search = c.ef_search;
  spec.ivf_nlist = c.nlist;
  spec.ivf_nprobe = c.nprobe;
  spec.pq_m = c.pq_m;
  Gallery gallery = Gallery::open(g.db);
  gallery.create_collection(g.collection, c.dim, spec);
  if (g.json) {
    std::cout << json{{"collection", g.collection}, {"dim", c.dim}, {"index", json::parse(spec.to_json())}}.dump() << "\n";
  } else {
    std::cout << "created collection \"" << g.collection << "\" in " << g.db << " (" << c.dim << "-d, " << c.index << ")\n";
  }
}

// Photos to enrol: person -> files, from --person with photos, or from --folder root/<person>/*.
std::map<std::string, std::vector<std::string>> photos_to_enroll(const PhotoArgs& p) {
  std::map<std::string, std::vector<std::string>> out;
  if (!p.folder.empty()) {
    if (!p.person.empty() || !p.images.empty()) throw ConfigError("enroll: give --folder, or --person with photos, not both");
    if (!fs::is_directory(p.folder)) throw InputError(p.folder + ": not a folder");
    for (const auto& person_dir : fs::directory_iterator(p.folder)) {
      if (!person_dir.is_directory()) continue;
      std::vector<std::string> files;
      for (const auto& f : fs::directory_iterator(person_dir.path())) {
        if (f.is_regular_file() && is_image_file(f.path())) files.push_back(f.path().string());
      }
      std::sort(files.begin(), files.end());
      if (!files.empty()) out[person_dir.path().filename().string()] = std::move(files);
    }
    if (out.empty()) throw InputError(p.folder + ": no root/<person>/<image> photos found");
  } else {
    if (p.person.empty() || p.images.empty()) throw ConfigError("enroll: give --person NAME with photos, or --folder ROOT");
    out[p.person] = p.images;
  }
  return out;
}

// What enrolment makes of one photo: a sample, or why there is none.
struct EnrollCandidate {
  std::string person, file;
  std::optional<gallery::SampleInput> sample;
  json skipped;           // {"file", "reason"} or {"file", "error"}
  bool no_face = false;   // skipped for having no face (else low quality or unreadable)
};

void run_enroll(const GalleryArgs& g, const PhotoArgs& p) {
  const auto work = photos_to_enroll(p);
  for (const auto& [person, files] : work) gallery::check_name("person", person);
  std::vector<EnrollCandidate> candidates;
  for (const auto& [person, files] : work) {
    for (const auto& file : files) candidates.push_back({person, file, std::nullopt, json(), false});
  }
  const int64_t total = static_cast<int64_t>(candidates.size());
  const PhotoWorkers workers = photo_workers(p.models, candidates.size());
  const pipeline::FaceAnalyzer analyzer = make_analyzer(workers.models, true, true);
  Progress progress("enroll", total, 50);
  std::mutex progress_mutex;
  int64_t done = 0;
  parallel_for_each(candidates.size(), workers.workers, [&](size_t i) {
    EnrollCandidate& c = candidates[i];
    try {
      pipeline::Face face;
      gallery::SampleInput s = sample_from_photo(analyzer, c.file, &face);
      if (face.rejection.empty()) {
        c.sample = std::move(s);
      } else {
        c.skipped = {{"file", c.file}, {"reason", face.rejection}};
      }
    } catch (const InputError& e) {
      const std::string what = e.what();
      c.no_face = what.find("no face found") != std::string::npos;
      c.skipped = {{"file", c.file}, {"error", what}};
    }
    std::lock_guard<std::mutex> lock(progress_mutex);
    progress.update(++done, {{"person", c.person}});
  });

  // Written person by person, in order, by this thread alone.
  std::optional<Gallery> gallery;
  int64_t enrolled = 0, persons_created = 0;
  json no_face = json::array(), low_quality = json::array(), unreadable = json::array();
  for (size_t i = 0; i < candidates.size();) {
    const std::string& person = candidates[i].person;
    std::vector<gallery::SampleInput> samples;
    for (; i < candidates.size() && candidates[i].person == person; ++i) {
      EnrollCandidate& c = candidates[i];
      if (c.sample) {
        samples.push_back(std::move(*c.sample));
      } else {
        (c.skipped.contains("reason") ? low_quality : c.no_face ? no_face : unreadable).push_back(c.skipped);
      }
    }
    if (samples.empty()) continue;
    if (!gallery) gallery = open_for_writing(g, static_cast<int>(samples.front().embedding.size()));
    const gallery::EnrollResult r = gallery->enroll(g.collection, person, samples, p.metadata);
    enrolled += static_cast<int64_t>(r.sample_ids.size());
    persons_created += r.created ? 1 : 0;
  }
  progress.finish();
  if (!gallery) throw InputError("enroll: no photo gave an enrollable face (" + std::to_string(no_face.size()) + " without a face, " +
                                 std::to_string(low_quality.size()) + " below the quality gate, " +
                                 std::to_string(unreadable.size()) + " unreadable)");
  const json summary{{"collection", g.collection}, {"images", total},       {"enrolled", enrolled},
                     {"persons", work.size()},     {"persons_created", persons_created},
                     {"no_face", no_face},         {"low_quality", low_quality}, {"unreadable", unreadable}};
  if (g.json) {
    std::cout << summary.dump() << "\n";
    return;
  }
  std::cout << "enrolled " << enrolled << " of " << total << " photos for " << work.size() << " persons ("
            << persons_created << " new) into \"" << g.collection << "\"\n";
  for (const auto* list : {&no_face, &low_quality, &unreadable}) {
    for (const auto& item : *list) {
      std::cout << "  skipped " << item["file"].get<std::string>() << ": "
                << (item.contains("reason") ? "low quality (" + item["reason"].get<std::string>() + ")"
                                            : item["error"].get<std::string>())
                << "\n";
    }
  }
}

gallery::SearchOptions search_options(const PhotoArgs& p) {
  gallery::SearchOptions o;
  o.k = p.k;
  o.threshold = p.threshold;
  if (p.over == "samples") {
    o.over = gallery::SearchOver::Samples;
  } else if (p.over != "persons") {
    throw ConfigError("--over: expected persons or samples, got '" + p.over + "'");
  }
  return o;
}

json box_json(const pipeline::Face& face) {
  const auto& b = face.detection.box;
  return json{b.x1, b.y1, b.x2, b.y2};
}

json matches_json(const std::vector<gallery::Match>& matches) {
  json out = json::array();
  for (const auto& m : matches) {
    json match{{"person", m.person}, {"score", m.score}};
    if (m.sample_id != 0) match["sample_id"] = m.sample_id;
    out.push_back(match);
  }
  return out;
}

// One photo prints {"matches": [...], "face": ...}; several print {"results": [{"file", "matches",
// "face"} or {"file", "error"}...]}, so that a whole probe set is searched with one model load.
void run_search(const GalleryArgs& g, const PhotoArgs& p) {
  const Gallery gallery = Gallery::open(g.db);
  const PhotoWorkers workers = photo_workers(p.models, p.images.size());
  const pipeline::FaceAnalyzer analyzer = make_analyzer(workers.models, true, true);
  const gallery::SearchOptions options = search_options(p);
  // The probes' faces in parallel, then the searches in order.
  std::vector<std::optional<pipeline::Face>> faces(p.images.size());
  std::vector<std::string> errors(p.images.size());
  parallel_for_each(p.images.size(), workers.workers, [&](size_t i) {
    try {
      faces[i] = analyzer.analyze_largest(analyzer.load_photo(p.images[i]));
    } catch (const InputError& e) {
      if (p.images.size() == 1) throw;
      errors[i] = e.what();
    }
  });
  json results = json::array();
  for (size_t i = 0; i < p.images.size(); ++i) {
    const std::string& file = p.images[i];
    json result{{"file", file}};
    if (faces[i]) {
      const pipeline::Face& face = *faces[i];
      const auto matches = gallery.search(g.collection, face.embedding, options);
      result["matches"] = matches_json(matches);
      result["face"] = {{"box", box_json(face)}, {"score", face.detection.score}};
      if (!g.json) {
        if (matches.empty()) std::cout << file << ": no match at or above " << p.threshold << "\n";
        for (const auto& m : matches) std::cout << file << "\t" << m.person << "\t" << m.score << "\n";
      }
    } else {
      result["error"] = errors[i];
      if (!g.json) std::cout << file << ": " << errors[i] << "\n";
    }
    results.push_back(std::move(result));
  }
  if (!g.json) return;
  if (p.images.size() == 1) {
    results[0].erase("file");
    std::cout << results[0].dump() << "\n";
  } else {
    std::cout << json{{"results", results}}.dump() << "\n";
  }
}

void run_verify(const GalleryArgs& g, const PhotoArgs& p) {
  if (p.person.empty() || p.images.size() != 1) throw ConfigError("verify: give --person NAME and one photo");
  const Gallery gallery = Gallery::open(g.db);
  const pipeline::FaceAnalyzer analyzer = make_analyzer(p.models, true, true);
  const std::string& file = p.images.front();
  const pipeline::Face face = analyzer.analyze_largest(analyzer.load_photo(file));
  const float similarity = gallery.verify(g.collection, p.person, face.embedding);
  const bool same = similarity >= p.threshold;
  if (g.json) {
    std::cout << json{{"person", p.person}, {"similarity", similarity}, {"same", same}, {"threshold", p.threshold}}.dump()
              << "\n";
  } else {
    std::cout << file << (same ? " matches " : " does not match ") << p.person << " (similarity " << similarity
              << ", threshold " << p.threshold << ")\n";
  }
}

void run_list(const GalleryArgs& g) {
  const Gallery gallery = Gallery::open(g.db);
  json persons = json::array();
  for (const auto& person : gallery.persons(g.collection)) {
    persons.push_back({{"name", person.name}, {"samples", person.samples}, {"created_ms", person.created_ms},
                       {"metadata", json::parse(person.metadata)}});
    if (!g.json) std::cout << person.name << "\t" << person.samples << " samples\n";
  }
  if (g.json) std::cout << json{{"collection", g.collection}, {"persons", persons}}.dump() << "\n";
}

void run_remove(const GalleryArgs& g, const std::string& person, int64_t sample) {
  if (person.empty() == (sample == 0)) throw ConfigError("remove: give --person NAME or --sample ID");
  Gallery gallery = Gallery::open(g.db);
  const bool removed = person.empty() ? gallery.remove_sample(g.collection, sample) : gallery.remove_person(g.collection, person);
  const std::string what = person.empty() ? "sample " + std::to_string(sample) : "person \"" + person + "\"";
  if (!removed) throw InputError(g.db + ": no " + what + " in collection \"" + g.collection + "\"");
  if (g.json) {
    std::cout << json{{"removed", true}}.dump() << "\n";
  } else {
    std::cout << "removed " << what << "\n";
  }
}

void run_stats(const GalleryArgs& g) {
  const Gallery gallery = Gallery::open(g.db);
  json collections = json::array();
  for (const auto& c : gallery.collections()) {
    collections.push_back({{"name", c.name}, {"dim", c.dim}, {"index", gallery::index_kind_name(c.index.kind)},
                           {"effective_index", c.effective_index}, {"effective_sample_index", c.effective_sample_index},
                           {"persons", c.persons}, {"samples", c.samples},
                           {"index_bytes", c.index_bytes}});
    if (!g.json) {
      std::cout << c.name << ": " << c.persons << " persons, " << c.samples << " samples, " << c.dim << "-d, index "
                << gallery::index_kind_name(c.index.kind) << " (searching persons " << c.effective_index
                << ", samples " << c.effective_sample_index << ", "
                << c.index_bytes / 1024 << " KiB)\n";
    }
  }
  const auto db_bytes = fs::file_size(g.db);
  if (g.json) {
    std::cout << json{{"db", g.db}, {"db_bytes", db_bytes}, {"schema_version", Gallery::schema_version()},
                      {"collections", collections}}.dump()
              << "\n";
  }
}

}  // namespace

void add_gallery_command(CLI::App& app) {
  CLI::App* gallery = app.add_subcommand("gallery", "Enrol faces and search them 1:N (SQLite + FAISS)");
  gallery->require_subcommand(1);
  auto g = std::make_shared<GalleryArgs>();
  auto photo = std::make_shared<PhotoArgs>();

  auto create_args = std::make_shared<CreateArgs>();
  CLI::App* create = gallery->add_subcommand("create", "Create a collection (and the database when absent)");
  add_db_options(create, *g);
  create->add_option("--dim", create_args->dim, "Embedding size");
  create->add_option("--index", create_args->index, "flat | int8 | hnsw | ivfpq");
  create->add_option("--hnsw-m", create_args->hnsw_m, "HNSW neighbours per node");
  create->add_option("--ef-search", create_args->ef_search, "HNSW search depth");
  create->add_option("--nlist", create_args->nlist, "IVF lists (0: about 4*sqrt(n) when trained)");
  create->add_option("--nprobe", create_args->nprobe, "IVF lists searched");
  create->add_option("--pq-m", create_args->pq_m, "PQ sub-quantisers (must divide --dim)");
  create->callback([g, create_args] { run_create(*g, *create_args); });

  CLI::App* enroll = gallery->add_subcommand("enroll", "Enrol photos of a person, or a folder root/<person>/*.jpg");
  add_db_options(enroll, *g);
  enroll->add_option("--person", photo->person, "Person name");
  enroll->add_option("images", photo->images, "Photos of the person (the largest face of each)");
  enroll->add_option("--folder", photo->folder, "Enrol root/<person>/<photo> for every person folder");
  enroll->add_option("--metadata", photo->metadata, "JSON object stored with new persons");
  add_face_model_options(enroll, photo->models, true);
  enroll->callback([g, photo] { run_enroll(*g, *photo); });

  CLI::App* search = gallery->add_subcommand("search", "Who is this? The best matches of each photo's largest face");
  add_db_options(search, *g);
  search->add_option("images", photo->images, "Photos (the largest face of each)")->required();
  search->add_option("--k", photo->k, "Matches to return");
  search->add_option("--threshold", photo->threshold, "Drop matches scoring below this cosine");
  search->add_option("--over", photo->over, "persons (templates) | samples");
  add_face_model_options(search, photo->models, true);
  search->callback([g, photo] { run_search(*g, *photo); });

  CLI::App* verify = gallery->add_subcommand("verify", "Is this photo the enrolled person? (1:1 against the template)");
  add_db_options(verify, *g);
  verify->add_option("--person", photo->person, "Person name")->required();
  verify->add_option("image", photo->images, "Photo")->required();
  verify->add_option("--threshold", photo->threshold, "Cosine threshold for \"same\"");
  add_face_model_options(verify, photo->models, true);
  verify->callback([g, photo] { run_verify(*g, *photo); });

  CLI::App* list = gallery->add_subcommand("list", "Persons of a collection with their sample counts");
  add_db_options(list, *g);
  list->callback([g] { run_list(*g); });

  auto person = std::make_shared<std::string>();
  auto sample = std::make_shared<int64_t>(0);
  CLI::App* remove = gallery->add_subcommand("remove", "Remove a person (with all samples) or one sample");
  add_db_options(remove, *g);
  remove->add_option("--person", *person, "Person name");
  remove->add_option("--sample", *sample, "Sample id");
  remove->callback([g, person, sample] { run_remove(*g, *person, *sample); });

  auto out = std::make_shared<std::string>();
  auto only = std::make_shared<std::vector<std::string>>();
  CLI::App* export_cmd = gallery->add_subcommand("export", "Write collections to a portable JSON file");
  export_cmd->add_option("--db", g->db, "Gallery database file")->required();
  export_cmd->add_option("--out", *out, "Output JSON file")->required();
  export_cmd->add_option("--collection", *only, "Collections to export (default all)");
  export_cmd->callback([g, out, only] {
    Gallery::open(g->db).export_json(*out, *only);
    std::cout << "exported " << g->db << " to " << *out << "\n";
  });

  auto in = std::make_shared<std::string>();
  CLI::App* import_cmd = gallery->add_subcommand("import", "Add an export's collections, persons and samples");
  import_cmd->add_option("--db", g->db, "Gallery database file")->required();
  import_cmd->add_option("file", *in, "Export JSON file")->required();
  import_cmd->add_flag("--json", g->json, "Print one JSON object");
  import_cmd->callback([g, in] {
    const int64_t added = Gallery::open(g->db).import_json(*in);
    if (g->json) {
      std::cout << json{{"added_samples", added}}.dump() << "\n";
    } else {
      std::cout << "imported " << added << " samples from " << *in << "\n";
    }
  });

  CLI::App* stats = gallery->add_subcommand("stats", "Collections, sizes and indexes of a database");
  stats->add_option("--db", g->db, "Gallery database file")->required();
  stats->add_flag("--json", g->json, "Print one JSON object");
  stats->callback([g] { run_stats(*g); });
}

}  // namespace arcforge::cli
