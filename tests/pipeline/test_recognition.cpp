// Recognition through the pipeline on real photos: preprocessing specs, flip-add, model packs,
// the deepface pair protocol with both MobileFaceNets, and small_lfw.bin's aligned pairs.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <numeric>

#include "arcforge/common/error.hpp"
#include "arcforge/data/verification_set.hpp"
#include "arcforge/image/codec.hpp"
#include "arcforge/pipeline/face_analyzer.hpp"
#include "arcforge/pipeline/pair_evaluation.hpp"
#include "shared_data.hpp"

namespace ap = arcforge::pipeline;
using ap::test::ScratchDir;
using ap::test::shared_face;
using ap::test::shared_model;

namespace {

const char* kPaddleSpec = "bgr,mean=127.5,std=128";

ap::AnalyzerOptions options_with(const std::string& spec, bool flip = false) {
  ap::AnalyzerOptions o;
  o.runtime.threads = 2;
  if (!spec.empty()) o.recognizer_spec = ap::parse_preprocess_spec(spec);
  o.flip = flip;
  return o;
}

arcforge::image::Image mirrored(const arcforge::image::Image& in) {
  arcforge::image::Image out = in;
  for (int y = 0; y < in.height; ++y) {
    for (int x = 0; x < in.width; ++x) {
      for (int c = 0; c < in.channels; ++c) out.at(x, y, c) = in.at(in.width - 1 - x, y, c);
    }
  }
  return out;
}

}  // namespace

TEST(PreprocessSpec, ParsesNamedAndExplicitForms) {
  const ap::PreprocessSpec p = ap::parse_preprocess_spec(kPaddleSpec);
  EXPECT_TRUE(p.bgr);
  EXPECT_FLOAT_EQ(p.mean[1], 127.5f);
  EXPECT_FLOAT_EQ(p.std[2], 128.0f);
  const ap::PreprocessSpec i = ap::parse_preprocess_spec("imagenet,size=112x112");
  EXPECT_FALSE(i.bgr);
  EXPECT_FLOAT_EQ(i.mean[0], 123.675f);
  EXPECT_FLOAT_EQ(i.std[2], 57.375f);
  const ap::PreprocessSpec t = ap::parse_preprocess_spec("rgb,mean=1/2/3,std=4/5/6,size=96x112");
  EXPECT_FLOAT_EQ(t.mean[2], 3);
  EXPECT_EQ(t.width, 96);
  EXPECT_EQ(t.height, 112);
  for (const char* bad : {"bgr,mean=abc", "std=0", "mean=1/2", "size=12", "colour=red", "mean=1/2/3/4"}) {
    EXPECT_THROW(ap::parse_preprocess_spec(bad), arcforge::ConfigError) << bad;
  }
}

TEST(Recognizer, RefusesADetectorAndWrongCrops) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  EXPECT_THROW(ap::Recognizer::load(shared_model("scrfd_500m_bnkps.onnx")), arcforge::InputError);
  const ap::Recognizer r = ap::Recognizer::load(shared_model("paddle_mobilefacenet128.onnx"),
                                                ap::parse_preprocess_spec(kPaddleSpec));
  EXPECT_EQ(r.embedding_size(), 128);
  EXPECT_THROW(r.embed({arcforge::image::Image(100, 112, 3)}), arcforge::InputError);
}

TEST(Recognizer, FlipAddIsMirrorInvariantAndBatchingChangesNothing) {
  REQUIRE_SHARED(shared_model("paddle_mobilefacenet128.onnx"));
  REQUIRE_SHARED(shared_face("insightface/Tom_Hanks_54745.png"));
  const ap::Recognizer r = ap::Recognizer::load(shared_model("paddle_mobilefacenet128.onnx"),
                                                ap::parse_preprocess_spec(kPaddleSpec), {.threads = 2});
  const auto crop = arcforge::image::decode_file(shared_face("insightface/Tom_Hanks_54745.png"));
  ASSERT_EQ(crop.width, 112);
  const auto plain = r.embed({crop, mirrored(crop)});
  const auto flipped = r.embed({crop, mirrored(crop)}, true);
  // flip-add of a crop and of its mirror image are the same sum in a different order.
  for (size_t k = 0; k < flipped[0].size(); ++k) {
    EXPECT_NEAR(flipped[0][k], flipped[1][k], 1e-4f * (1 + std::abs(flipped[0][k])));
    EXPECT_NEAR(flipped[0][k], plain[0][k] + plain[1][k], 1e-4f * (1 + std::abs(flipped[0][k])));
  }
  const auto single = r.embed({crop});  // batch of 1 vs batch of 2
  for (size_t k = 0; k < single[0].size(); ++k) EXPECT_NEAR(single[0][k], plain[0][k], 1e-4f);
  EXPECT_GT(ap::cosine_similarity(plain[0], plain[1]), 0.5f);  // a face and its mirror image
}

TEST(ModelPack, FindsDetectorAndRecognizerByShapeAndRefusesAmbiguity) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  ScratchDir dir;
  // Links, not copies: the shared models stay where they are.
  std::filesystem::create_symlink(shared_model("scrfd_500m_bnkps.onnx"), dir.file("det_500m.onnx"));
  std::filesystem::create_symlink(shared_model("paddle_mobilefacenet128.onnx"), dir.file("w_mbf.onnx"));
  const ap::ModelPack pack = ap::find_model_pack(dir.path().string());
  EXPECT_EQ(pack.detector, dir.file("det_500m.onnx"));
  EXPECT_EQ(pack.recognizer, dir.file("w_mbf.onnx"));
  std::filesystem::create_symlink(shared_model("mobilefacenet128_relu6.onnx"), dir.file("w_relu6.onnx"));
  try {
    ap::find_model_pack(dir.path().string());
    FAIL() << "two recognizers must be ambiguous";
  } catch (const arcforge::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("w_relu6.onnx"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ap::find_model_pack(dir.file("nope")), arcforge::InputError);
}

TEST(ModelPack, SidecarGivesThePreprocessing) {
  REQUIRE_SHARED(shared_model("mobilefacenet128_relu6.onnx"));
  ScratchDir dir;
  std::filesystem::create_symlink(shared_model("mobilefacenet128_relu6.onnx"), dir.file("relu6.onnx"));
  std::ofstream(dir.file("relu6.json"))
      << R"({"input_colour": "BGR", "mean": [1,2,3], "std": [4,5,6], "layout": "NCHW", "input_size": [112,112],
             "embedding_size": 128, "arch": "mbf", "source": "test", "batch": "1", "batch_norm": "kept",
             "opset": 11, "onnx": "relu6.onnx",
             "template": [[38.2946,51.6963],[73.5318,51.5014],[56.0252,71.7366],[41.5493,92.3655],[70.7299,92.2041]]})";
  const ap::Recognizer r = ap::Recognizer::load(dir.file("relu6.onnx"));
  EXPECT_TRUE(r.spec().bgr);
  EXPECT_FLOAT_EQ(r.spec().mean[2], 3);
  EXPECT_FLOAT_EQ(r.spec().std[0], 4);
  EXPECT_NE(r.spec().source.find("relu6.json"), std::string::npos);
  // An explicit spec wins over the sidecar.
  EXPECT_FALSE(ap::Recognizer::load(dir.file("relu6.onnx"), ap::parse_preprocess_spec("imagenet")).spec().bgr);
}

namespace {

void expect_deepface_protocol(const std::string& recognizer, const std::string& spec) {
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  REQUIRE_SHARED(shared_model(recognizer));
  REQUIRE_SHARED(shared_face("deepface/pairs.csv"));
  const ap::FaceAnalyzer analyzer(shared_model("scrfd_500m_bnkps.onnx"), shared_model(recognizer),
                                  options_with(spec));
  const auto pairs = arcforge::data::read_pair_list(shared_face("deepface/pairs.csv"));
  ap::PairEvalOptions o;
  o.choice = ap::FaceChoice::largest;
  const ap::PairEvalResult r = ap::evaluate_pair_list(analyzer, pairs, o);
  std::printf("[deepface %s] accuracy %.4f +- %.4f AUC %.5f threshold %.3f, %zu photo(s) without a face\n",
              recognizer.c_str(), r.report.accuracy, r.report.accuracy_std, r.report.auc, r.report.threshold,
              r.no_face.size());
  EXPECT_EQ(r.report.pairs, 520);
  EXPECT_GE(r.report.accuracy, 0.99);
  EXPECT_GE(r.report.auc, 0.995);
  EXPECT_TRUE(r.no_face.empty());
}

}  // namespace

TEST(RealRecognition, DeepfacePairsWithPaddleMobileFaceNet) {
  expect_deepface_protocol("paddle_mobilefacenet128.onnx", kPaddleSpec);
}

TEST(RealRecognition, DeepfacePairsWithReluSixMobileFaceNet) {
  expect_deepface_protocol("mobilefacenet128_relu6.onnx", "imagenet");
}

TEST(RealRecognition, SmallLfwSamePairsScoreWellAboveDeepfaceDifferentPairs) {
  REQUIRE_SHARED(shared_face("insightface/small_lfw.bin"));
  REQUIRE_SHARED(shared_face("deepface/pairs.csv"));
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  const ap::FaceAnalyzer analyzer(shared_model("scrfd_500m_bnkps.onnx"), shared_model("paddle_mobilefacenet128.onnx"),
                                  options_with(kPaddleSpec));
  // small_lfw.bin: already aligned 112x112 crops, pairs (2i, 2i+1), all "same".
  const auto set = arcforge::data::read_bin(shared_face("insightface/small_lfw.bin"));
  std::vector<arcforge::image::Image> crops;
  for (const auto& bytes : set.images) crops.push_back(arcforge::image::decode(bytes, "small_lfw.bin"));
  const auto emb = analyzer.embed_aligned(crops);
  std::vector<double> same;
  for (size_t i = 0; i + 1 < emb.size(); i += 2) same.push_back(ap::cosine_similarity(emb[i], emb[i + 1]));
  // deepface different-person pairs, through detection and alignment.
  const auto pairs = arcforge::data::read_pair_list(shared_face("deepface/pairs.csv"));
  std::vector<std::vector<float>> photo_emb;
  for (const auto& file : pairs.files) {
    const auto photo = analyzer.load_image(file);
    auto faces = analyzer.detect(photo);
    ASSERT_FALSE(faces.empty()) << file;
    std::vector<ap::Face> largest{*std::max_element(faces.begin(), faces.end(), [](auto& a, auto& b) {
      return a.detection.box.area() < b.detection.box.area();
    })};
    analyzer.complete(photo, largest);
    photo_emb.push_back(largest.front().embedding);
  }
  std::vector<double> different;
  for (size_t p = 0; p < pairs.pairs.size(); ++p) {
    if (pairs.same[p]) continue;
    different.push_back(ap::cosine_similarity(photo_emb[pairs.pairs[p].first], photo_emb[pairs.pairs[p].second]));
  }
  const double mean_same = std::accumulate(same.begin(), same.end(), 0.0) / same.size();
  const double mean_diff = std::accumulate(different.begin(), different.end(), 0.0) / different.size();
  const double max_diff = *std::max_element(different.begin(), different.end());
  const double min_same = *std::min_element(same.begin(), same.end());
  std::printf("small_lfw same: mean %.3f min %.3f; deepface different: mean %.3f max %.3f\n", mean_same, min_same,
              mean_diff, max_diff);
  EXPECT_EQ(same.size(), 10u);
  EXPECT_GT(mean_same, mean_diff + 0.4);
  EXPECT_GT(min_same, max_diff);
}

// The issue's acceptance run: LFW View 2 (6000 pairs, 7,701 photos) through SCRFD-500m at 640,
// 5-point alignment and paddle MobileFaceNet with flip-add. A plain Python + OpenCV pipeline with
// the same models reaches 99.28% (MANIFEST.md); we must do at least as well. About 100 s on 2 cores.
TEST(RealRecognition, LfwViewTwoThroughTheWholePipeline) {
  REQUIRE_SHARED(shared_face("lfw/pairs.txt"));
  REQUIRE_SHARED(shared_model("scrfd_500m_bnkps.onnx"));
  auto options = options_with(kPaddleSpec, /*flip=*/true);
  options.runtime.threads = 1;  // one photo per core instead of one operator over both
  const ap::FaceAnalyzer analyzer(shared_model("scrfd_500m_bnkps.onnx"), shared_model("paddle_mobilefacenet128.onnx"),
                                  options);
  const auto pairs = arcforge::data::read_pair_list(shared_face("lfw/pairs.txt"), shared_face("lfw/images"));
  ap::PairEvalOptions o;
  o.workers = 2;
  const ap::PairEvalResult r = ap::evaluate_pair_list(analyzer, pairs, o);
  std::printf("[lfw] accuracy %.4f +- %.4f AUC %.5f threshold %.3f, %zu photo(s) without a face, %.1f s\n",
              r.report.accuracy, r.report.accuracy_std, r.report.auc, r.report.threshold, r.no_face.size(), r.seconds);
  EXPECT_EQ(r.report.pairs, 6000);
  EXPECT_EQ(r.images, 7701);
  EXPECT_GE(r.report.accuracy, 0.992);
  EXPECT_GE(r.report.auc, 0.9968);
  EXPECT_LE(r.no_face.size(), 19u);
}
