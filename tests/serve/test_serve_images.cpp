// The API with face models on real photos (../shared/faces/deepface): enrol by image, search and
// verify (same person found above the threshold, a stranger not; similarities equal to those of
// the separate `arcforge verify` process), detect, the image errors, and 503 when more requests
// arrive than --max-concurrent admits.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "arcforge/gallery/gallery.hpp"
#include "arcforge/image/codec.hpp"
#include "serve_test_support.hpp"

namespace arcforge::serve::test {
namespace {

std::string deepface(const std::string& file) { return shared_face("deepface/" + file); }

uint32_t crc32(const std::string& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::string big_endian(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xFF), char((v >> 8) & 0xFF), char(v & 0xFF)};
}

// A valid PNG whose header claims width x height: a decompression bomb must stop at the header.
std::string png_claiming(uint32_t width, uint32_t height) {
  const std::string small = image::encode_png(image::Image(8, 8, 3));
  // Replace the IHDR chunk (right after the 8-byte signature) with one claiming the new size.
  std::string ihdr_data = big_endian(width) + big_endian(height) + std::string("\x08\x02\x00\x00\x00", 5);
  std::string chunk = big_endian(13) + "IHDR" + ihdr_data + big_endian(crc32("IHDR" + ihdr_data));
  return small.substr(0, 8) + chunk + small.substr(8 + 25);
}

class ServeImages : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scratch_ = new ScratchDir();
    for (const auto& f :
         {shared_model("scrfd_500m_bnkps.onnx"), shared_model("paddle_mobilefacenet128.onnx"), deepface("img5.jpg")}) {
      if (!std::filesystem::exists(f)) {
        skip_ = "SKIPPED: " + f + " is absent (set ARCFORGE_SHARED_DIR to ../shared)";
        return;
      }
    }
    server_ = new ServerProcess();
    std::vector<std::string> args = model_args();
    // One request at a time: the tests below are sequential, and the busy test needs a low limit.
    for (const char* a : {"--max-concurrent", "1", "--http-threads", "8"}) args.push_back(a);
    args.insert(args.end(), {"--db", scratch_->file("gallery.db")});
    server_->start(args, scratch_->file("port"), scratch_->file("server.log"));
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      EXPECT_EQ(server_->terminate(), 0);
    }
    delete server_;
    server_ = nullptr;
    delete scratch_;
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }
  void TearDown() override {
    if (server_ != nullptr) {
      EXPECT_EQ(Api(server_->port()).get("/health").status, 200) << server_->log();
    }
  }
  static Api api() { return Api(server_->port()); }

  static ScratchDir* scratch_;
  static ServerProcess* server_;
  static std::string skip_;
};
ScratchDir* ServeImages::scratch_ = nullptr;
ServerProcess* ServeImages::server_ = nullptr;
std::string ServeImages::skip_;

TEST_F(ServeImages, EnrolledPersonIsFoundAndStrangerIsNot) {
  Api a = api();
  EXPECT_EQ(a.get("/health").body["models"], true);
  // The default collection takes the recognizer's embedding size.
  EXPECT_EQ(a.get("/v1/collections").body["collections"][0]["dim"], 128);
  ASSERT_EQ(a.post("/v1/collections", {{"name", "people"}}).status, 201);
  // One photo each of four identities (identities.csv); img5 is id00.
  const std::vector<std::pair<std::string, std::string>> enrol = {
      {"id00", "img5.jpg"}, {"id01", "img46.jpg"}, {"id06", "img16.jpg"}, {"id12", "img25.jpg"}};
  for (const auto& [person, file] : enrol) {
    const std::string bytes = read_text(deepface(file));
    // A data URL prefix is accepted as well as bare base64.
    const std::string image = (person == "id01" ? "data:image/jpeg;base64," : "") + base64_encode(bytes);
    Reply r = a.post("/v1/collections/people/persons/" + person + "/faces", {{"image", image}});
    ASSERT_EQ(r.status, 201) << file << ": " << r.text;
    EXPECT_EQ(r.body["created"], true);
    ASSERT_EQ(r.body["face"]["box"].size(), 4u);
    EXPECT_GT(r.body["face"]["score"].get<double>(), 0.5);
    Reply person_reply = a.get("/v1/collections/people/persons/" + person);
    ASSERT_EQ(person_reply.body["samples"].size(), 1u);
    EXPECT_EQ(person_reply.body["samples"][0]["image_sha256"], gallery::sha256_hex(bytes.data(), bytes.size()));
    EXPECT_EQ(person_reply.body["samples"][0]["box"], r.body["face"]["box"]);
  }
  // img11 is another photo of id00: found first, above the threshold.
  Reply same = a.post("/v1/collections/people/search", {{"image", photo_base64(deepface("img11.jpg"))}});
  ASSERT_EQ(same.status, 200) << same.text;
  ASSERT_GE(same.body["matches"].size(), 1u) << same.text;
  EXPECT_EQ(same.body["matches"][0]["person"], "id00");
  EXPECT_GT(same.body["matches"][0]["score"].get<double>(), 0.29);
  ASSERT_EQ(same.body["faces"].size(), 1u);
  EXPECT_EQ(same.body["faces"][0]["matches"], same.body["matches"]);
  // img12 is id03, never enrolled: no match above the threshold, and even its best score is below.
  Reply stranger = a.post("/v1/collections/people/search", {{"image", photo_base64(deepface("img12.jpg"))}});
  ASSERT_EQ(stranger.status, 200) << stranger.text;
  EXPECT_EQ(stranger.body["matches"].size(), 0u) << stranger.text;
  Reply all = a.post("/v1/collections/people/search",
                     {{"image", photo_base64(deepface("img12.jpg"))}, {"threshold", -1}, {"k", 10}});
  ASSERT_EQ(all.body["matches"].size(), enrol.size());
  EXPECT_LT(all.body["matches"][0]["score"].get<double>(), 0.29);

  // A single-sample template is that photo's embedding, so search scores equal verify's similarity.
  Reply verify = a.post("/v1/verify", {{"image_a", photo_base64(deepface("img5.jpg"))},
                                       {"image_b", photo_base64(deepface("img11.jpg"))}});
  ASSERT_EQ(verify.status, 200) << verify.text;
  EXPECT_NEAR(verify.body["similarity"].get<double>(), same.body["matches"][0]["score"].get<double>(), 1e-4);
  // Verify by person: the same number again.
  Reply by_person = a.post(
      "/v1/verify", {{"collection", "people"}, {"person", "id00"}, {"image", photo_base64(deepface("img11.jpg"))}});
  ASSERT_EQ(by_person.status, 200) << by_person.text;
  EXPECT_NEAR(by_person.body["similarity"].get<double>(), verify.body["similarity"].get<double>(), 1e-4);
  EXPECT_EQ(by_person.body["same"], true);
}

TEST_F(ServeImages, VerifyAgreesWithTheCommandLine) {
  Api a = api();
  for (const auto& [first, second, same] : std::vector<std::tuple<std::string, std::string, bool>>{
           {"img5.jpg", "img11.jpg", true}, {"img5.jpg", "img46.jpg", false}}) {
    Reply r =
        a.post("/v1/verify", {{"image_a", photo_base64(deepface(first))}, {"image_b", photo_base64(deepface(second))}});
    ASSERT_EQ(r.status, 200) << r.text;
    EXPECT_EQ(r.body["same"], same) << first << " " << second << ": " << r.text;
    EXPECT_NEAR(r.body["threshold"].get<double>(), 0.29, 1e-6);
    EXPECT_EQ(r.body["faces"].size(), 2u);
    // The reference: `arcforge verify` in its own process, reading the files itself.
    std::string command = std::string(ARCFORGE_CLI) + " verify --json " + deepface(first) + " " + deepface(second);
    for (const auto& arg : model_args()) command += " " + arg;
    int status = 0;
    const std::string out = pipeline::test::run_command(command, &status);
    ASSERT_EQ(status, 0) << out;
    const json reference = json::parse(out.substr(out.find('{')));
    EXPECT_NEAR(r.body["similarity"].get<double>(), reference["similarity"].get<double>(), 1e-5);
  }
}

TEST_F(ServeImages, DetectFindsEveryFaceWithLandmarks) {
  Api a = api();
  const std::string bytes = read_text(deepface("couple.jpg"));
  const image::Image decoded = image::decode(bytes, "couple.jpg");
  Reply r = a.post("/v1/detect", {{"image", base64_encode(bytes)}});
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["width"], decoded.width);
  EXPECT_EQ(r.body["height"], decoded.height);
  ASSERT_GE(r.body["faces"].size(), 2u) << r.text;
  for (const auto& face : r.body["faces"]) {
    const auto box = face["box"].get<std::vector<double>>();
    ASSERT_EQ(box.size(), 4u);
    EXPECT_LT(box[0], box[2]);
    EXPECT_LT(box[1], box[3]);
    EXPECT_GT(face["score"].get<double>(), 0.5);
    ASSERT_EQ(face["landmarks"].size(), 5u);
    for (const auto& p : face["landmarks"]) {  // eyes, nose, mouth inside the (slightly grown) box
      const double w = box[2] - box[0], h = box[3] - box[1];
      EXPECT_GT(p[0].get<double>(), box[0] - 0.1 * w);
      EXPECT_LT(p[0].get<double>(), box[2] + 0.1 * w);
      EXPECT_GT(p[1].get<double>(), box[1] - 0.1 * h);
      EXPECT_LT(p[1].get<double>(), box[3] + 0.1 * h);
    }
    EXPECT_GT(face["quality"]["blur"].get<double>(), 0);
    EXPECT_TRUE(face["quality"].contains("yaw"));
  }
  // Search over a group photo reports every face, largest first.
  Reply search = a.post("/v1/collections/default/search", {{"image", base64_encode(bytes)}, {"threshold", -1}});
  ASSERT_EQ(search.status, 200) << search.text;
  ASSERT_EQ(search.body["faces"].size(), r.body["faces"].size());
  double previous_area = 1e18;
  for (const auto& face : search.body["faces"]) {
    const auto box = face["box"].get<std::vector<double>>();
    const double area = (box[2] - box[0]) * (box[3] - box[1]);
    EXPECT_LE(area, previous_area);
    previous_area = area;
  }
}

TEST_F(ServeImages, BadImagesGet422AndTheServerStaysUp) {
  Api a = api();
  const std::string enrol = "/v1/collections/default/persons/bad/faces";
  image::Image blank(320, 240, 3);
  for (auto& p : blank.pixels) p = 128;
  const std::string jpeg = read_text(deepface("img5.jpg"));
  struct Case {
    std::string what, path;
    json body;
    int status;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"not an image", enrol, {{"image", base64_encode("hello, these bytes are no picture")}}, 422, "image"},
      {"truncated JPEG", enrol, {{"image", base64_encode(jpeg.substr(0, 2000))}}, 422, "image"},
      {"header claims 100 Mpx", enrol, {{"image", base64_encode(png_claiming(10000, 10000))}}, 422, "pixels"},
      {"bomb on detect", "/v1/detect", {{"image", base64_encode(png_claiming(60000, 60000))}}, 422, "pixels"},
      {"no face", enrol, {{"image", base64_encode(image::encode_png(blank))}}, 422, "no face"},
      {"no face in search",
       "/v1/collections/default/search",
       {{"image", base64_encode(image::encode_png(blank))}},
       422,
       "no face"},
      {"no face in image_b",
       "/v1/verify",
       {{"image_a", base64_encode(jpeg)}, {"image_b", base64_encode(image::encode_png(blank))}},
       422,
       "image_b"},
      {"missing image_b", "/v1/verify", {{"image_a", base64_encode(jpeg)}}, 400, "image_b"},
      {"bad base64", enrol, {{"image", "****"}}, 400, "base64"},
      {"image not a string", "/v1/detect", {{"image", 42}}, 400, "\"image\": expected a string"},
  };
  for (const Case& c : cases) {
    Reply r = a.post(c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.what << ": " << r.text;
    EXPECT_NE(r.error().find(c.message), std::string::npos) << c.what << ": " << r.text;
  }
  EXPECT_EQ(a.get("/v1/collections/default/persons/bad").status, 404);  // nothing stored
}

TEST_F(ServeImages, RequestsOverMaxConcurrentGet503) {
  // Six large photos at once against --max-concurrent 1: some are turned away (not queued), with
  // Retry-After; the admitted ones complete. Bursts repeat in case the scheduler serialised one.
  const std::string body = json{{"image", photo_base64(deepface("img1.jpg"))}}.dump();
  int ok = 0, busy = 0;
  for (int burst = 0; burst < 5 && (busy == 0 || ok == 0); ++burst) {
    std::vector<Reply> replies(6);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < replies.size(); ++i) {
      threads.emplace_back([&, i] { replies[i] = Api(server_->port()).post_raw("/v1/detect", body); });
    }
    for (auto& t : threads) t.join();
    for (const Reply& r : replies) {
      if (r.status == 200) {
        ++ok;
      } else {
        ASSERT_EQ(r.status, 503) << r.text;
        ++busy;
        EXPECT_NE(r.error().find("--max-concurrent"), std::string::npos) << r.text;
        ASSERT_NE(r.headers.find("Retry-After"), r.headers.end());
        EXPECT_EQ(r.headers.find("Retry-After")->second, "1");
      }
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(busy, 0);
  const json metrics = api().get("/metrics").body;
  EXPECT_EQ(metrics["rejected_busy"].get<int>(), busy);
  EXPECT_EQ(metrics["in_flight"], 0);
  // /health is never limited.
  EXPECT_EQ(api().get("/health").status, 200);
}

TEST_F(ServeImages, SigtermFinishesTheRequestsInFlight) {
  // A server of its own, since this one is stopped.
  ScratchDir scratch;
  ServerProcess server;
  std::vector<std::string> args = model_args();
  args.insert(args.end(), {"--db", scratch.file("g.db")});
  server.start(args, scratch.file("port"), scratch.file("log"));
  const std::string body = json{{"image", photo_base64(deepface("img1.jpg"))}}.dump();
  Api watcher(server.port());
  bool caught_in_flight = false;
  Reply reply;
  for (int attempt = 0; attempt < 5 && !caught_in_flight; ++attempt) {
    std::thread request([&] { reply = Api(server.port()).post_raw("/v1/detect", body); });
    // SIGTERM while the detection runs (seen in /metrics, which is never limited).
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < give_up && reply.status == 0) {
      if (watcher.get("/metrics").body["in_flight"] == 1) {
        caught_in_flight = true;
        ::kill(server.pid(), SIGTERM);
        break;
      }
    }
    request.join();
  }
  ASSERT_TRUE(caught_in_flight) << "no request was ever seen in flight";
  EXPECT_EQ(reply.status, 200) << reply.text;
  EXPECT_GE(reply.body["faces"].size(), 1u);
  EXPECT_EQ(server.terminate(), 0) << server.log();  // already exiting: this only reaps it
  EXPECT_NE(server.log().find("SIGTERM"), std::string::npos);
}

}  // namespace
}  // namespace arcforge::serve::test
