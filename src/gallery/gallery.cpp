// Gallery: SQLite is the truth, FAISS indexes are rebuilt from it at open and updated after every
// committed write. See include/arcforge/gallery/gallery.hpp.
#include "arcforge/gallery/gallery.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "arcforge/common/error.hpp"
#include "gallery_impl.hpp"
#include "schema.hpp"

namespace arcforge::gallery {
namespace {

std::vector<float> blob_to_vector(const Statement& row, int column, int dim, const std::string& path) {
  if (row.column_bytes(column) != static_cast<size_t>(dim) * sizeof(float)) {
    throw InputError(file_message(path, "a sample's embedding has " + std::to_string(row.column_bytes(column)) +
                                            " bytes where the collection's dimension needs " +
                                            std::to_string(dim * sizeof(float))));
  }
  std::vector<float> v(dim);
  std::memcpy(v.data(), row.column_blob(column), v.size() * sizeof(float));
  return v;
}

// The normalised mean of a person's samples, read from the database.
std::vector<float> person_template(SqliteDb& db, int64_t person_id, int dim) {
  Statement rows(db, "SELECT embedding FROM samples WHERE person_id = ?");
  rows.bind(1, person_id);
  std::vector<double> sum(dim, 0.0);
  int64_t count = 0;
  while (rows.step()) {
    const auto v = blob_to_vector(rows, 0, dim, db.path());
    for (int i = 0; i < dim; ++i) sum[i] += v[i];
    ++count;
  }
  std::vector<float> mean(sum.begin(), sum.end());
  if (count == 0) return {};
  normalise_embedding(mean, "template");
  return mean;
}

Sample sample_from_row(const Statement& row, const std::string& person, int dim, bool with_embedding,
                       const std::string& path) {
  // Columns: id, image_sha256, box_x1, box_y1, box_x2, box_y2, quality, metadata, created_ms, embedding
  Sample s;
  s.id = row.column_int(0);
  s.person = person;
  s.image_sha256 = row.column_text(1);
  for (int i = 0; i < 4; ++i) s.box[i] = static_cast<float>(row.column_double(2 + i));
  s.quality = static_cast<float>(row.column_double(6));
  s.metadata = row.column_text(7);
  s.created_ms = row.column_int(8);
  if (with_embedding) s.embedding = blob_to_vector(row, 9, dim, path);
  return s;
}

// Columns: id, name, metadata, created_ms, sample count (kPersonSelect).
Person person_from_row(const Statement& row) {
  Person p;
  p.id = row.column_int(0);
  p.name = row.column_text(1);
  p.metadata = row.column_text(2);
  p.created_ms = row.column_int(3);
  p.samples = row.column_int(4);
  return p;
}

constexpr const char* kPersonSelect =
    "SELECT p.id, p.name, p.metadata, p.created_ms, (SELECT count(*) FROM samples s WHERE s.person_id = p.id) "
    "FROM persons p WHERE p.collection_id = ? ";

constexpr const char* kSampleColumns =
    "s.id, s.image_sha256, s.box_x1, s.box_y1, s.box_x2, s.box_y2, s.quality, s.metadata, s.created_ms, s.embedding";

// InputError when a query for `what` does not have the collection's dimension.
void check_query_size(const std::string& what, size_t size, int dim, const std::string& collection) {
  if (size != static_cast<size_t>(dim)) {
    throw InputError(what + ": embedding has " + std::to_string(size) + " values, collection \"" + collection +
                     "\" holds " + std::to_string(dim));
  }
}

// Cosine between a unit template and `embedding` (normalised here), summed in double.
float cosine_to_template(const std::vector<float>& t, std::vector<float> embedding) {
  normalise_embedding(embedding, "verify");
  double dot = 0;
  for (size_t i = 0; i < t.size(); ++i) dot += static_cast<double>(t[i]) * embedding[i];
  return static_cast<float>(dot);
}

[[noreturn]] void unknown_person(const std::string& collection, const std::string& person) {
  throw InputError("unknown person \"" + person + "\" in collection \"" + collection + "\"");
}

}  // namespace

// ---- state ------------------------------------------------------------------------------------

void Gallery::Impl::load_all() {
  collections.clear();
  Statement rows(db, "SELECT id, name, dim, index_spec, created_ms FROM collections ORDER BY id");
  while (rows.step()) {
    const int dim = static_cast<int>(rows.column_int(2));
    auto state = std::make_unique<CollectionState>(dim, IndexSpec::from_json(rows.column_text(3)));
    state->id = rows.column_int(0);
    state->name = rows.column_text(1);
    state->created_ms = rows.column_int(4);
    collections[state->name] = std::move(state);
  }
  for (auto& [name, state] : collections) {
    Statement persons(db, "SELECT id, name FROM persons WHERE collection_id = ?");
    persons.bind(1, state->id);
    while (persons.step()) state->name_person(persons.column_int(0), persons.column_text(1));

    // Samples in batches into the sample index; per-person sums for the templates.
    std::unordered_map<int64_t, std::vector<double>> sums;
    std::vector<int64_t> batch_ids;
    std::vector<float> batch;
    auto flush = [&] {
      if (batch_ids.empty()) return;
      state->samples.add(batch_ids, batch.data());
      batch_ids.clear();
      batch.clear();
    };
    Statement samples(db,
                      "SELECT s.id, s.person_id, s.embedding FROM samples s JOIN persons p ON p.id = s.person_id "
                      "WHERE p.collection_id = ? ORDER BY s.id");
    samples.bind(1, state->id);
    while (samples.step()) {
      const int64_t sample_id = samples.column_int(0), person_id = samples.column_int(1);
      const auto v = blob_to_vector(samples, 2, state->dim, path);
      state->sample_person[sample_id] = person_id;
      ++state->person_samples[person_id];
      auto& sum = sums[person_id];
      sum.resize(state->dim, 0.0);
      for (int i = 0; i < state->dim; ++i) sum[i] += v[i];
      batch_ids.push_back(sample_id);
      batch.insert(batch.end(), v.begin(), v.end());
      if (batch_ids.size() == 4096) flush();
    }
    flush();
    for (auto& [person_id, sum] : sums) {
      std::vector<float> t(sum.begin(), sum.end());
      normalise_embedding(t, "template");
      batch_ids.push_back(person_id);
      batch.insert(batch.end(), t.begin(), t.end());
    }
    if (!batch_ids.empty()) state->templates.add(batch_ids, batch.data());
  }
}

void CollectionState::name_person(int64_t person_id, const std::string& name) {
  person_names[person_id] = name;
  person_ids[name] = person_id;
}

void CollectionState::forget_person(int64_t person_id) {
  templates.remove(std::span<const int64_t>(&person_id, 1));
  const auto it = person_names.find(person_id);
  if (it != person_names.end()) {
    person_ids.erase(it->second);
    person_names.erase(it);
  }
  person_samples.erase(person_id);
}

void Gallery::Impl::train_due(const std::string& collection) {
  std::vector<std::pair<VectorIndex*, IvfPqTraining>> trainings;
  {
    std::unique_lock lock(state_mutex);
    for (auto& [name, s] : collections) {
      if (!collection.empty() && name != collection) continue;
      for (VectorIndex* index : {&s->templates, &s->samples}) {
        if (auto t = index->start_training()) trainings.emplace_back(index, std::move(*t));
      }
    }
  }
  // The indexes outlive this: dropping or reloading a collection needs db_mutex, which we hold.
  auto finish_all = [&] {
    std::unique_lock lock(state_mutex);
    for (auto& [index, t] : trainings) index->finish_training(std::move(t));
  };
  try {
    for (auto& entry : trainings) entry.second.run();
  } catch (...) {
    finish_all();  // the untrained ones stay exact and are due again at the next write
    throw;
  }
  finish_all();
}

const CollectionState& Gallery::Impl::state(const std::string& collection) const {
  const auto it = collections.find(collection);
  if (it == collections.end()) throw InputError("unknown collection \"" + collection + "\"");
  return *it->second;
}

Gallery::Impl::Key Gallery::Impl::key(const std::string& collection) const {
  std::shared_lock lock(state_mutex);
  const CollectionState& s = state(collection);
  return {s.id, s.dim};
}

CollectionState& Gallery::Impl::state(const std::string& collection) {
  return const_cast<CollectionState&>(static_cast<const Impl*>(this)->state(collection));
}

// ---- lifetime ---------------------------------------------------------------------------------

Gallery Gallery::open(const std::string& path) {
  auto impl = std::make_unique<Impl>(path);
  open_schema(impl->db);
  impl->load_all();
  {
    std::lock_guard db_lock(impl->db_mutex);  // train_due's precondition; nobody else has it yet
    impl->train_due();
  }
  return Gallery(std::move(impl));
}

Gallery::Gallery(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Gallery::~Gallery() = default;
Gallery::Gallery(Gallery&&) noexcept = default;
Gallery& Gallery::operator=(Gallery&&) noexcept = default;

const std::string& Gallery::path() const { return impl_->path; }
int Gallery::schema_version() { return kSchemaVersion; }

// ---- collections ------------------------------------------------------------------------------

void Gallery::create_collection(const std::string& name, int dim, const IndexSpec& index) {
  check_name("collection", name);
  if (dim <= 0 || dim > 65536) throw InputError("collection \"" + name + "\": dimension " + std::to_string(dim) + " is out of range");
  auto state = std::make_unique<CollectionState>(dim, index);  // validates the spec against dim
  std::lock_guard db_lock(impl_->db_mutex);
  {
    Statement exists(impl_->db, "SELECT 1 FROM collections WHERE name = ?");
    exists.bind(1, name);
    if (exists.step()) throw InputError("collection \"" + name + "\" exists already");
  }
  Transaction tx(impl_->db);
  Statement insert(impl_->db, "INSERT INTO collections (name, dim, index_spec, created_ms) VALUES (?, ?, ?, ?)");
  state->created_ms = now_ms();
  insert.bind(1, name).bind(2, int64_t{dim}).bind(3, index.to_json()).bind(4, state->created_ms).run();
  state->id = impl_->db.last_insert_id();
  state->name = name;
  tx.commit();
  std::unique_lock state_lock(impl_->state_mutex);
  impl_->collections[name] = std::move(state);
}

bool Gallery::has_collection(const std::string& name) const {
  std::shared_lock lock(impl_->state_mutex);
  return impl_->collections.count(name) > 0;
}

namespace {
CollectionInfo info_of(const CollectionState& s) {
  CollectionInfo info;
  info.name = s.name;
  info.dim = s.dim;
  info.index = s.spec;
  info.effective_index = s.templates.effective_kind();
  info.effective_sample_index = s.samples.effective_kind();
  info.created_ms = s.created_ms;
  info.persons = static_cast<int64_t>(s.person_names.size());
  info.samples = static_cast<int64_t>(s.sample_person.size());
  info.index_bytes = s.templates.memory_bytes() + s.samples.memory_bytes();
  return info;
}
}  // namespace

std::vector<CollectionInfo> Gallery::collections() const {
  std::shared_lock lock(impl_->state_mutex);
  std::vector<CollectionInfo> out;
  for (const auto& [name, state] : impl_->collections) out.push_back(info_of(*state));
  return out;
}

CollectionInfo Gallery::collection(const std::string& name) const {
  std::shared_lock lock(impl_->state_mutex);
  return info_of(impl_->state(name));
}

void Gallery::drop_collection(const std::string& name) {
  std::lock_guard db_lock(impl_->db_mutex);
  Transaction tx(impl_->db);
  Statement drop(impl_->db, "DELETE FROM collections WHERE name = ?");
  drop.bind(1, name).run();
  if (impl_->db.changes() == 0) throw InputError("unknown collection \"" + name + "\"");
  tx.commit();
  std::unique_lock state_lock(impl_->state_mutex);
  impl_->collections.erase(name);
}

// ---- writes -----------------------------------------------------------------------------------

EnrollResult Gallery::enroll(const std::string& collection, const std::string& person,
                             const std::vector<SampleInput>& samples, const std::string& person_metadata) {
  check_name("person", person);
  if (samples.empty()) throw InputError("enroll \"" + person + "\": no samples");
  const std::string metadata = compact_json_object(person_metadata, "person \"" + person + "\"");

  std::lock_guard db_lock(impl_->db_mutex);
  const auto [collection_id, dim] = impl_->key(collection);
  // Validate every sample before writing anything.
  std::vector<std::vector<float>> embeddings;
  std::vector<std::string> sample_metadata;
  for (size_t i = 0; i < samples.size(); ++i) {
    const std::string what = "person \"" + person + "\" sample " + std::to_string(i);
    if (samples[i].embedding.size() != static_cast<size_t>(dim)) {
      throw InputError(what + ": embedding has " + std::to_string(samples[i].embedding.size()) +
                       " values, collection \"" + collection + "\" holds " + std::to_string(dim));
    }
    embeddings.push_back(samples[i].embedding);
    normalise_embedding(embeddings.back(), what);
    sample_metadata.push_back(compact_json_object(samples[i].metadata, what));
  }

  EnrollResult result;
  const int64_t now = now_ms();
  Transaction tx(impl_->db);
  {
    Statement find(impl_->db, "SELECT id FROM persons WHERE collection_id = ? AND name = ?");
    find.bind(1, collection_id).bind(2, person);
    if (find.step()) {
      result.person_id = find.column_int(0);
    } else {
      Statement insert(impl_->db, "INSERT INTO persons (collection_id, name, metadata, created_ms) VALUES (?, ?, ?, ?)");
      insert.bind(1, collection_id).bind(2, person).bind(3, metadata).bind(4, now).run();
      result.person_id = impl_->db.last_insert_id();
      result.created = true;
    }
  }
  Statement insert(impl_->db,
                   "INSERT INTO samples (person_id, embedding, image_sha256, box_x1, box_y1, box_x2, box_y2, quality, "
                   "metadata, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  for (size_t i = 0; i < samples.size(); ++i) {
    insert.reset();
    insert.bind(1, result.person_id)
        .bind_blob(2, embeddings[i].data(), embeddings[i].size() * sizeof(float))
        .bind(3, samples[i].image_sha256);
    for (int b = 0; b < 4; ++b) insert.bind(4 + b, static_cast<double>(samples[i].box[b]));
    insert.bind(8, static_cast<double>(samples[i].quality)).bind(9, sample_metadata[i]).bind(10, now).run();
    result.sample_ids.push_back(impl_->db.last_insert_id());
  }
  const std::vector<float> updated_template = person_template(impl_->db, result.person_id, dim);
  tx.commit();  // durable from here: synchronous=FULL fsyncs the WAL

  {
    std::unique_lock state_lock(impl_->state_mutex);
    CollectionState& state = impl_->state(collection);
    std::vector<float> flat;
    for (const auto& e : embeddings) flat.insert(flat.end(), e.begin(), e.end());
    state.samples.add(result.sample_ids, flat.data());
    for (const int64_t id : result.sample_ids) state.sample_person[id] = result.person_id;
    state.name_person(result.person_id, person);
    result.samples = (state.person_samples[result.person_id] += static_cast<int64_t>(samples.size()));
    const int64_t person_id = result.person_id;
    state.templates.add(std::span<const int64_t>(&person_id, 1), updated_template.data());
  }
  impl_->train_due(collection);
  return result;
}

bool Gallery::remove_person(const std::string& collection, const std::string& person) {
  std::lock_guard db_lock(impl_->db_mutex);
  const int64_t collection_id = impl_->key(collection).id;
  Transaction tx(impl_->db);
  int64_t person_id = 0;
  std::vector<int64_t> sample_ids;
  {
    Statement find(impl_->db, "SELECT id FROM persons WHERE collection_id = ? AND name = ?");
    find.bind(1, collection_id).bind(2, person);
    if (!find.step()) return false;
    person_id = find.column_int(0);
    Statement ids(impl_->db, "SELECT id FROM samples WHERE person_id = ?");
    ids.bind(1, person_id);
    while (ids.step()) sample_ids.push_back(ids.column_int(0));
    Statement drop(impl_->db, "DELETE FROM persons WHERE id = ?");  // samples go by ON DELETE CASCADE
    drop.bind(1, person_id).run();
  }
  tx.commit();

  std::unique_lock state_lock(impl_->state_mutex);
  CollectionState& state = impl_->state(collection);
  state.samples.remove(sample_ids);
  for (const int64_t id : sample_ids) state.sample_person.erase(id);
  state.forget_person(person_id);
  return true;
}

bool Gallery::remove_sample(const std::string& collection, int64_t sample_id) {
  std::lock_guard db_lock(impl_->db_mutex);
  const auto [collection_id, dim] = impl_->key(collection);
  Transaction tx(impl_->db);
  int64_t person_id = 0;
  {
    Statement find(impl_->db,
                   "SELECT s.person_id FROM samples s JOIN persons p ON p.id = s.person_id "
                   "WHERE s.id = ? AND p.collection_id = ?");
    find.bind(1, sample_id).bind(2, collection_id);
    if (!find.step()) return false;
    person_id = find.column_int(0);
  }
  Statement drop(impl_->db, "DELETE FROM samples WHERE id = ?");
  drop.bind(1, sample_id).run();
  std::vector<float> updated_template = person_template(impl_->db, person_id, dim);
  if (updated_template.empty()) {
    Statement drop_person(impl_->db, "DELETE FROM persons WHERE id = ?");
    drop_person.bind(1, person_id).run();
  }
  tx.commit();

  std::unique_lock state_lock(impl_->state_mutex);
  CollectionState& state = impl_->state(collection);
  state.samples.remove(std::span<const int64_t>(&sample_id, 1));
  state.sample_person.erase(sample_id);
  if (updated_template.empty()) {
    state.forget_person(person_id);
  } else {
    --state.person_samples[person_id];
    state.templates.add(std::span<const int64_t>(&person_id, 1), updated_template.data());
  }
  return true;
}

// ---- reads ------------------------------------------------------------------------------------

std::vector<std::vector<Match>> Gallery::search(const std::string& collection, const float* queries, size_t nq,
                                                const SearchOptions& options) const {
  if (options.k <= 0) throw InputError("search: k must be at least 1");
  const int k = std::min(options.k, 1000);
  std::shared_lock lock(impl_->state_mutex);
  const CollectionState& state = impl_->state(collection);
  std::vector<float> normalised(queries, queries + nq * state.dim);
  for (size_t q = 0; q < nq; ++q) {
    std::vector<float> row(normalised.begin() + q * state.dim, normalised.begin() + (q + 1) * state.dim);
    normalise_embedding(row, "query " + std::to_string(q));
    std::copy(row.begin(), row.end(), normalised.begin() + q * state.dim);
  }
  const bool over_samples = options.over == SearchOver::Samples;
  const auto hits = (over_samples ? state.samples : state.templates).search(normalised.data(), nq, k);
  std::vector<std::vector<Match>> out(nq);
  for (size_t q = 0; q < nq; ++q) {
    for (const Hit& hit : hits[q]) {
      if (hit.score < options.threshold) continue;
      Match m;
      m.score = hit.score;
      int64_t person_id = hit.id;
      if (over_samples) {
        m.sample_id = hit.id;
        person_id = state.sample_person.at(hit.id);
      }
      m.person = state.person_names.at(person_id);
      out[q].push_back(std::move(m));
    }
  }
  return out;
}

std::vector<Match> Gallery::search(const std::string& collection, const std::vector<float>& query,
                                   const SearchOptions& options) const {
  {
    std::shared_lock lock(impl_->state_mutex);
    check_query_size("search", query.size(), impl_->state(collection).dim, collection);
  }
  return search(collection, query.data(), 1, options).front();
}

float Gallery::verify(const std::string& collection, const std::string& person, const std::vector<float>& embedding) const {
  {
    // fp32 templates are the exact mean in memory: the shared state lock suffices.
    std::shared_lock lock(impl_->state_mutex);
    const CollectionState& state = impl_->state(collection);
    check_query_size("verify", embedding.size(), state.dim, collection);
    const auto it = state.person_ids.find(person);
    if (it == state.person_ids.end()) unknown_person(collection, person);
    if (const auto t = state.templates.exact_vector(it->second)) return cosine_to_template(*t, embedding);
  }
  // Quantised templates (int8, trained ivfpq) are not exact: recompute the mean from the database.
  std::lock_guard db_lock(impl_->db_mutex);
  const auto [collection_id, dim] = impl_->key(collection);
  check_query_size("verify", embedding.size(), dim, collection);
  Statement find(impl_->db, "SELECT id FROM persons WHERE collection_id = ? AND name = ?");
  find.bind(1, collection_id).bind(2, person);
  if (!find.step()) unknown_person(collection, person);
  return cosine_to_template(person_template(impl_->db, find.column_int(0), dim), embedding);
}

std::vector<Person> Gallery::persons(const std::string& collection, int64_t offset, int64_t limit) const {
  std::lock_guard db_lock(impl_->db_mutex);
  const int64_t collection_id = impl_->key(collection).id;
  Statement rows(impl_->db, (std::string(kPersonSelect) + "ORDER BY p.name LIMIT ? OFFSET ?").c_str());
  rows.bind(1, collection_id).bind(2, limit < 0 ? int64_t{-1} : limit).bind(3, std::max<int64_t>(0, offset));
  std::vector<Person> out;
  while (rows.step()) out.push_back(person_from_row(rows));
  return out;
}

std::optional<Person> Gallery::person(const std::string& collection, const std::string& name) const {
  std::lock_guard db_lock(impl_->db_mutex);
  const int64_t collection_id = impl_->key(collection).id;
  Statement row(impl_->db, (std::string(kPersonSelect) + "AND p.name = ?").c_str());
  row.bind(1, collection_id).bind(2, name);
  if (!row.step()) return std::nullopt;
  return person_from_row(row);
}

std::vector<Sample> Gallery::samples(const std::string& collection, const std::string& person, bool with_embeddings) const {
  std::lock_guard db_lock(impl_->db_mutex);
  const auto [collection_id, dim] = impl_->key(collection);
  const std::string sql = std::string("SELECT ") + kSampleColumns +
                          " FROM samples s JOIN persons p ON p.id = s.person_id "
                          "WHERE p.collection_id = ? AND p.name = ? ORDER BY s.id";
  Statement rows(impl_->db, sql.c_str());
  rows.bind(1, collection_id).bind(2, person);
  std::vector<Sample> out;
  while (rows.step()) out.push_back(sample_from_row(rows, person, dim, with_embeddings, impl_->path));
  return out;
}

}  // namespace arcforge::gallery
