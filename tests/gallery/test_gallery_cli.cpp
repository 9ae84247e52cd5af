// `arcforge gallery` on real photos (../shared/faces/deepface): enrol a folder with one photo per
// identity, identify every other photo 1:N, and run the remaining subcommands on the result.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "arcforge/image/codec.hpp"
#include "pipeline/shared_data.hpp"

namespace arcforge::gallery {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using pipeline::test::run_command;
using pipeline::test::ScratchDir;
using pipeline::test::shared_face;
using pipeline::test::shared_model;

std::string models() {
  return " --detector " + shared_model("scrfd_500m_bnkps.onnx") + " --recognizer " +
         shared_model("paddle_mobilefacenet128.onnx") + " --recognizer-spec bgr,mean=127.5,std=128 --flip --threads 2";
}

json run_json(const std::string& args) {
  int status = 0;
  const std::string out = run_command(std::string(ARCFORGE_CLI) + " " + args, &status);
  EXPECT_EQ(status, 0) << args << "\n" << out;
  // The JSON object is the last line; progress goes to stderr (merged here) before it.
  const auto start = out.rfind("\n{");
  return json::parse(start == std::string::npos ? out : out.substr(start + 1));
}

TEST(GalleryCli, IdentifiesDeepfacePhotosOneToN) {
  const std::string csv = shared_face("deepface/identities.csv");
  REQUIRE_SHARED(csv);
  REQUIRE_SHARED(shared_model("paddle_mobilefacenet128.onnx"));
  // Gallery: the first photo of each identity (root/<identity>/<photo>, symlinks to ../shared);
  // probes: every other photo.
  ScratchDir dir;
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  std::map<std::string, std::string> truth;
  std::string probes;
  int probe_count = 0;
  while (std::getline(in, line)) {
    const auto comma = line.find(',');
    const std::string file = line.substr(0, comma), identity = line.substr(comma + 1);
    const std::string path = shared_face("deepface/" + file);
    truth[path] = identity;
    const fs::path person_dir = dir.path() / "enrol" / identity;
    if (!fs::exists(person_dir)) {
      fs::create_directories(person_dir);
      fs::create_symlink(path, person_dir / file);
    } else {
      probes += " " + path;
      ++probe_count;
    }
  }
  // A photo without a face is reported, not enrolled.
  image::Image grey(64, 64, 3);
  std::fill(grey.pixels.begin(), grey.pixels.end(), uint8_t{128});
  fs::create_directories(dir.path() / "enrol" / "nobody");
  image::write_png((dir.path() / "enrol" / "nobody" / "blank.png").string(), grey);

  const std::string db = dir.file("g.db");
  const json summary = run_json("gallery enroll --db " + db + " --folder " + (dir.path() / "enrol").string() + models() + " --json");
  EXPECT_EQ(summary["enrolled"], 13);
  EXPECT_EQ(summary["persons_created"], 13);
  ASSERT_EQ(summary["no_face"].size(), 1u);
  EXPECT_NE(summary["no_face"][0]["file"].get<std::string>().find("blank.png"), std::string::npos);

  const json results = run_json("gallery search --db " + db + probes + models() + " --k 3 --threshold 0 --json");
  ASSERT_EQ(results["results"].size(), static_cast<size_t>(probe_count));
  int correct = 0;
  for (const auto& r : results["results"]) {
    ASSERT_TRUE(r.contains("matches")) << r.dump();
    ASSERT_FALSE(r["matches"].empty()) << r.dump();
    const auto& top = r["matches"][0];
    correct += top["person"] == truth[r["file"].get<std::string>()] ? 1 : 0;
    // Best first.
    for (size_t i = 1; i < r["matches"].size(); ++i) EXPECT_GE(top["score"].get<double>(), r["matches"][i]["score"].get<double>());
  }
  const double rank1 = double(correct) / probe_count;
  std::cout << "deepface 1:N rank-1: " << correct << "/" << probe_count << " = " << rank1 << "\n";
  EXPECT_GE(rank1, 0.95);

  // One photo prints {"matches": [...]} as documented.
  const std::string img2 = shared_face("deepface/img2.jpg");
  const json one = run_json("gallery search --db " + db + " " + img2 + models() + " --json");
  ASSERT_FALSE(one["matches"].empty());
  EXPECT_EQ(one["matches"][0]["person"], "id00");
  // The probe set ran one photo per core: the same score for img2 as alone.
  int img2_probes = 0;
  for (const auto& r : results["results"]) {
    if (r["file"] == img2) {
      ++img2_probes;
      EXPECT_NEAR(r["matches"][0]["score"].get<double>(), one["matches"][0]["score"].get<double>(), 1e-5);
    }
  }
  EXPECT_EQ(img2_probes, 1);

  // verify against the template; list; stats; remove; export and import into a second database.
  const json v = run_json("gallery verify --db " + db + " --person id00 " + img2 + models() + " --json");
  EXPECT_TRUE(v["same"].get<bool>());
  EXPECT_NEAR(v["similarity"].get<double>(), one["matches"][0]["score"].get<double>(), 1e-5);
  const json list = run_json("gallery list --db " + db + " --json");
  EXPECT_EQ(list["persons"].size(), 13u);
  const json stats = run_json("gallery stats --db " + db + " --json");
  EXPECT_EQ(stats["collections"][0]["persons"], 13);
  EXPECT_EQ(stats["collections"][0]["dim"], 128);
  const std::string exported = dir.file("export.json");
  int status = 0;
  run_command(std::string(ARCFORGE_CLI) + " gallery export --db " + db + " --out " + exported, &status);
  ASSERT_EQ(status, 0);
  const json imported = run_json("gallery import --db " + dir.file("copy.db") + " " + exported + " --json");
  EXPECT_EQ(imported["added_samples"], 13);
  run_json("gallery remove --db " + db + " --person id00 --json");
  const json after = run_json("gallery search --db " + db + " " + img2 + models() + " --threshold 0 --json");
  for (const auto& m : after["matches"]) EXPECT_NE(m["person"], "id00");
  const json copy = run_json("gallery search --db " + dir.file("copy.db") + " " + img2 + models() + " --json");
  EXPECT_EQ(copy["matches"][0]["person"], "id00");

  // Errors name the problem and exit 1.
  const std::string out = run_command(std::string(ARCFORGE_CLI) + " gallery remove --db " + db + " --person id00", &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(out.find("id00"), std::string::npos) << out;
  const std::string junk = dir.file("junk.db");
  std::ofstream(junk) << "not a database";
  run_command(std::string(ARCFORGE_CLI) + " gallery list --db " + junk, &status);
  EXPECT_EQ(status, 1);
}

}  // namespace
}  // namespace arcforge::gallery
