// The face commands end to end through the built binary: detect, align, embed, verify, analyze,
// and eval on a pair list of photos.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "arcforge/image/codec.hpp"
#include "shared_data.hpp"

namespace ap = arcforge::pipeline;
using ap::test::run_command;
using ap::test::ScratchDir;
using ap::test::shared_face;
using ap::test::shared_model;

namespace {

std::string cli() { return ARCFORGE_CLI; }
std::string det() { return " --detector " + shared_model("scrfd_500m_bnkps.onnx"); }
std::string rec() {
  return " --recognizer " + shared_model("paddle_mobilefacenet128.onnx") + " --recognizer-spec bgr,mean=127.5,std=128";
}

nlohmann::json run_json(const std::string& args) {
  int status = 0;
  const std::string out = run_command(cli() + " " + args + " --threads 2 --json", &status);
  EXPECT_EQ(status, 0) << out;
  const auto start = out.find('{');
  if (status != 0 || start == std::string::npos) return nlohmann::json::object();
  return nlohmann::json::parse(out.substr(start));
}

}  // namespace

TEST(FaceCli, DetectPrintsFacesAndDrawsThem) {
  REQUIRE_SHARED(shared_face("insightface/t1.jpg"));
  ScratchDir dir;
  const auto j = run_json("detect " + shared_face("insightface/t1.jpg") + det() + " --draw " + dir.file("t1.png"));
  ASSERT_TRUE(j.contains("faces"));
  EXPECT_GE(j["faces"].size(), 5u);
  for (const auto& f : j["faces"]) {
    ASSERT_EQ(f["box"].size(), 4u);
    EXPECT_LT(f["box"][0].get<double>(), f["box"][2].get<double>());
    EXPECT_GE(f["score"].get<double>(), 0.5);
    ASSERT_EQ(f["landmarks"].size(), 5u);
  }
  const auto drawn = arcforge::image::decode_file(dir.file("t1.png"));
  EXPECT_EQ(drawn.width, j["width"].get<int>());
  // The first box's top edge is drawn green.
  const int x = static_cast<int>((j["faces"][0]["box"][0].get<double>() + j["faces"][0]["box"][2].get<double>()) / 2);
  const int y = static_cast<int>(std::lround(j["faces"][0]["box"][1].get<double>()));
  EXPECT_EQ(drawn.at(x, y, 1), 220);
  EXPECT_EQ(drawn.at(x, y, 0), 0);

  // Several photos (one per core): listed in the order given, each drawn into the folder.
  const std::vector<std::string> files{shared_face("deepface/img1.jpg"), shared_face("insightface/t1.jpg"),
                                       shared_face("deepface/couple.jpg")};
  const auto several = run_json("detect " + files[0] + " " + files[1] + " " + files[2] + det() + " --draw " +
                                dir.file("drawn"));
  ASSERT_EQ(several["images"].size(), 3u);
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(several["images"][i]["file"], files[i]);
    EXPECT_TRUE(std::filesystem::exists(several["images"][i]["drawn"].get<std::string>())) << files[i];
  }
  EXPECT_EQ(several["images"][1]["faces"].size(), j["faces"].size());
}

TEST(FaceCli, LargePhotosReportFullSizeCoordinatesWhateverTheDecode) {
  // img49.jpg is 4352x2903: decoded at 1/4 by default, whole with --full-size-decode, and drawn
  // (which needs it whole) with --draw.
  REQUIRE_SHARED(shared_face("deepface/img49.jpg"));
  if (std::system("command -v jpegtran > /dev/null 2>&1") != 0) GTEST_SKIP() << "SKIPPED: jpegtran not installed";
  ScratchDir dir;
  const std::string photo = shared_face("deepface/img49.jpg");
  const auto reduced = run_json("analyze " + photo + det() + rec());
  const auto whole = run_json("analyze " + photo + det() + rec() + " --full-size-decode");
  const auto drawn = run_json("detect " + photo + det() + " --draw " + dir.file("img49.png"));
  for (const auto* j : {&reduced, &whole, &drawn}) {
    EXPECT_EQ((*j)["width"], 4352);
    EXPECT_EQ((*j)["height"], 2903);
    ASSERT_EQ((*j)["faces"].size(), 1u);
  }
  // The same photo stored sideways with EXIF orientation 6 reports the upright size, unless told
  // to take it as stored.
  const std::string sideways = sideways_img49(dir);
  ASSERT_FALSE(sideways.empty());
  const auto upright = run_json("detect " + sideways + det());
  const auto as_stored = run_json("detect " + sideways + det() + " --ignore-orientation");
  EXPECT_EQ(upright["width"], 4352);
  EXPECT_EQ(as_stored["width"], 2903);
  ASSERT_EQ(upright["faces"].size(), 1u);
  EXPECT_NEAR(upright["faces"][0]["box"][0].get<double>(), whole["faces"][0]["box"][0].get<double>(), 10);

  const auto& a = reduced["faces"][0];
  const auto& b = whole["faces"][0];
  const double size = b["quality"]["face_size"].get<double>();
  EXPECT_GT(size, 300);  // the face is large: any box in 1/4-scale coordinates would be far off
  EXPECT_NEAR(a["quality"]["face_size"].get<double>(), size, 0.03 * size);
  for (int k = 0; k < 4; ++k) {
    EXPECT_NEAR(a["box"][k].get<double>(), b["box"][k].get<double>(), 0.03 * size) << k;
    EXPECT_NEAR(drawn["faces"][0]["box"][k].get<double>(), b["box"][k].get<double>(), 1e-3) << k;
  }
}

TEST(FaceCli, VerifyDecidesSameAndDifferent) {
  REQUIRE_SHARED(shared_face("deepface/img1.jpg"));
  const auto same = run_json("verify " + shared_face("deepface/img1.jpg") + " " + shared_face("deepface/img2.jpg") +
                             det() + rec());
  EXPECT_TRUE(same["same"].get<bool>()) << same.dump();
  EXPECT_GT(same["similarity"].get<double>(), same["threshold"].get<double>());
  EXPECT_EQ(same["faces"].size(), 2u);
  // img26 is another person (deepface identities.csv).
  const auto different = run_json("verify " + shared_face("deepface/img1.jpg") + " " +
                                  shared_face("deepface/img26.jpg") + det() + rec() + " --threshold 0.3");
  EXPECT_FALSE(different["same"].get<bool>()) << different.dump();
  EXPECT_FLOAT_EQ(different["threshold"].get<float>(), 0.3f);
}

TEST(FaceCli, NoFaceUndecodableAndHugePhotosAreClearErrors) {
  REQUIRE_SHARED(shared_face("deepface/img1.jpg"));
  ScratchDir dir;
  arcforge::image::Image grey(200, 200, 3);
  std::fill(grey.pixels.begin(), grey.pixels.end(), 128);
  arcforge::image::write_png(dir.file("blank.png"), grey);
  std::ofstream(dir.file("broken.jpg")) << "not an image";
  int status = 0;
  std::string out = run_command(cli() + " verify " + shared_face("deepface/img1.jpg") + " " + dir.file("blank.png") +
                                    det() + rec(), &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(out.find("blank.png: no face found"), std::string::npos) << out;
  out = run_command(cli() + " detect " + dir.file("broken.jpg") + det(), &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(out.find("broken.jpg"), std::string::npos) << out;
  out = run_command(cli() + " detect " + shared_face("deepface/img1.jpg") + det() + " --max-pixels 1000", &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(out.find("img1.jpg"), std::string::npos) << out;
  // Detect on a photo without a face is not an error: zero faces.
  const auto none = run_json("detect " + dir.file("blank.png") + det());
  EXPECT_EQ(none["faces"].size(), 0u);
}

TEST(FaceCli, EmbedAlignAnalyze) {
  REQUIRE_SHARED(shared_face("deepface/couple.jpg"));
  ScratchDir dir;
  const auto e = run_json("embed " + shared_face("deepface/img1.jpg") + " " + shared_face("deepface/couple.jpg") +
                          " --all-faces --flip --npy " + dir.file("e.npy") + det() + rec());
  ASSERT_GE(e["embeddings"].size(), 3u);  // one face + the couple
  for (const auto& row : e["embeddings"]) {
    ASSERT_EQ(row.size(), 128u);
    double norm = 0;
    for (const auto& v : row) norm += v.get<double>() * v.get<double>();
    EXPECT_NEAR(norm, 1.0, 1e-4);
  }
  EXPECT_TRUE(std::filesystem::exists(dir.file("e.npy")));
  // Several photos run one per core with single-threaded models: the same embedding, in order, as
  // the photo alone with every core.
  const auto alone = run_json("embed " + shared_face("deepface/img1.jpg") + " --flip" + det() + rec());
  ASSERT_EQ(alone["embeddings"].size(), 1u);
  ASSERT_EQ(e["faces"][0]["file"], shared_face("deepface/img1.jpg"));
  double dot = 0;
  for (size_t k = 0; k < 128; ++k) dot += alone["embeddings"][0][k].get<double>() * e["embeddings"][0][k].get<double>();
  EXPECT_GT(dot, 0.99999);
  const auto a = run_json("align " + shared_face("deepface/couple.jpg") + " --out " + dir.file("crops") + det());
  ASSERT_GE(a["crops"].size(), 2u);
  const auto crop = arcforge::image::decode_file(a["crops"][0]["path"].get<std::string>());
  EXPECT_EQ(crop.width, 112);
  EXPECT_EQ(crop.height, 112);
  const auto z = run_json("analyze " + shared_face("deepface/img1.jpg") + det() + rec() +
                          " --min-quality size=100000");
  ASSERT_EQ(z["faces"].size(), 1u);
  const auto& face = z["faces"][0];
  EXPECT_GT(face["quality"]["blur"].get<double>(), 0);
  EXPECT_LT(std::abs(face["quality"]["yaw"].get<double>()), 45);
  EXPECT_FALSE(face["passes_quality"].get<bool>());  // no face is 100000 px
  EXPECT_EQ(face["embedding"].size(), 128u);
}

TEST(FaceCli, EvalOnAPairListOfPhotos) {
  REQUIRE_SHARED(shared_face("deepface/pairs.csv"));
  const auto j = run_json("eval --pairs " + shared_face("deepface/pairs.csv") + det() + rec() + " --face largest");
  EXPECT_EQ(j["pairs"].get<int>(), 520);
  EXPECT_GE(j["accuracy"].get<double>(), 0.99);
  EXPECT_GE(j["auc"].get<double>(), 0.995);
  EXPECT_EQ(j["no_face"].get<int>(), 0);
}

TEST(FaceExample, TheDocumentedProgramRuns) {
  REQUIRE_SHARED(shared_face("deepface/img1.jpg"));
  int status = 0;
  const std::string out = run_command(std::string(ARCFORGE_FACE_EXAMPLE) + " " +
                                          shared_model("scrfd_500m_bnkps.onnx") + " " +
                                          shared_model("paddle_mobilefacenet128.onnx") + " bgr,mean=127.5,std=128 " +
                                          shared_face("deepface/img1.jpg") + " " + shared_face("deepface/img2.jpg"),
                                      &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("128-d embedding"), std::string::npos) << out;
  EXPECT_NE(out.find("same person"), std::string::npos) << out;
}

// Issue 4's accuracy target on the pipeline: an int8 recognizer (quantized on small_lfw.bin's
// aligned faces, depthwise and last convolutions kept in fp32) next to an fp32 detector leaves the
// deepface verification accuracy where fp32 has it.
TEST(FaceCli, Int8RecognizerKeepsDeepfaceAccuracy) {
  REQUIRE_SHARED(shared_face("insightface/small_lfw.bin"));
  REQUIRE_SHARED(shared_face("deepface/pairs.csv"));
  ScratchDir dir;
  int status = 0;
  const std::string out = run_command(cli() + " quantize " + shared_model("paddle_mobilefacenet128.onnx") + " --calib " +
                                          shared_face("insightface/small_lfw.bin") + " --out " + dir.file("q.onnx") +
                                          " --mean 127.5 --std 128 --bgr --keep-fp32 depthwise,last --threads 2",
                                      &status);
  ASSERT_EQ(status, 0) << out;
  const std::string pairs = "eval --pairs " + shared_face("deepface/pairs.csv") + det() + " --face largest";
  const auto fp32 = run_json(pairs + rec());
  const auto int8 = run_json(pairs + " --recognizer " + dir.file("q.onnx") +
                             " --recognizer-spec bgr,mean=127.5,std=128 --precision int8 --det-precision fp32");
  std::printf("deepface fp32 %.4f (AUC %.5f), int8 recognizer %.4f (AUC %.5f)\n", fp32["accuracy"].get<double>(),
              fp32["auc"].get<double>(), int8["accuracy"].get<double>(), int8["auc"].get<double>());
  EXPECT_GE(int8["accuracy"].get<double>(), fp32["accuracy"].get<double>());
  EXPECT_GE(int8["auc"].get<double>(), 0.995);
}
