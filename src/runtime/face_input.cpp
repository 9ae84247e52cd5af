// Face crops in (folder, .rec, .bin) and out as NCHW tensors.
#include "arcforge/runtime/face_input.hpp"

#include <algorithm>
#include <filesystem>

#include "arcforge/common/error.hpp"
#include "arcforge/common/log.hpp"
#include "arcforge/data/recordio.hpp"
#include "arcforge/data/verification_set.hpp"
#include "arcforge/image/codec.hpp"

namespace arcforge::runtime {
namespace {

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Center crop to height x width; false when the image is smaller.
bool fit(image::Image& img, int height, int width) {
  if (img.height < height || img.width < width) return false;
  if (img.height == height && img.width == width) return true;
  image::Image out(width, height, img.channels);
  const int y0 = (img.height - height) / 2, x0 = (img.width - width) / 2;
  for (int y = 0; y < height; ++y) {
    std::copy_n(&img.pixels[img.index(x0, y0 + y, 0)], out.row_bytes(), &out.pixels[out.index(0, y, 0)]);
  }
  img = std::move(out);
  return true;
}

}  // namespace

Tensor faces_to_tensor(const std::vector<image::Image>& faces, const Preprocess& p) {
  if (faces.empty()) throw InputError("faces_to_tensor: no faces");
  const int h = faces[0].height, w = faces[0].width;
  Tensor t;
  t.shape = {static_cast<int64_t>(faces.size()), 3, h, w};
  t.data.resize(static_cast<std::size_t>(t.numel()));
  const std::size_t plane = static_cast<std::size_t>(h) * w;
  for (std::size_t n = 0; n < faces.size(); ++n) {
    const image::Image& img = faces[n];
    if (img.height != h || img.width != w) throw InputError("faces_to_tensor: faces differ in size");
    for (int c = 0; c < 3; ++c) {
      const int src_c = img.channels == 1 ? 0 : (p.bgr ? 2 - c : c);
      float* dst = t.data.data() + (n * 3 + c) * plane;
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) dst[y * w + x] = (img.at(x, y, src_c) - p.mean[c]) / p.std[c];
      }
    }
  }
  return t;
}

FaceSource load_faces(const std::string& source, int height, int width, int64_t limit) {
  FaceSource out;
  auto take = [&](image::Image img) {
    if (fit(img, height, width)) out.faces.push_back(std::move(img));
    else ++out.skipped;
  };
  auto full = [&] { return limit > 0 && static_cast<int64_t>(out.faces.size()) >= limit; };
  std::error_code ec;
  if (std::filesystem::is_directory(source, ec)) {
    std::vector<std::string> files;
    for (const auto& e : std::filesystem::directory_iterator(source)) {
      if (e.is_regular_file()) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      if (full()) break;
      try {
        take(image::decode_file(f));
      } catch (const InputError& e) {
        log::warn(std::string("skipping ") + e.what());
        ++out.skipped;
      }
    }
  } else if (has_suffix(source, ".rec")) {
    data::RecordIOReader reader(source);
    const data::RecordDataset set = data::scan_record_dataset(reader);
    for (int64_t key : set.image_keys) {
      if (full()) break;
      const data::ImageRecord r = reader.read(key);
      take(image::decode(r.image, reader.describe(key)));
    }
  } else if (has_suffix(source, ".bin")) {
    const data::VerificationSet set = data::read_bin(source);
    for (std::size_t k = 0; k < set.images.size() && !full(); ++k) {
      take(image::decode(set.images[k], source + ": image " + std::to_string(k)));
    }
  } else {
    throw InputError(file_message(source, "expected a folder of images, a .rec or an InsightFace .bin"));
  }
  if (out.faces.empty()) {
    throw InputError(file_message(source, "no face image of at least " + std::to_string(height) + "x" +
                                              std::to_string(width) + " (" + std::to_string(out.skipped) + " skipped)"));
  }
  if (out.skipped > 0) {
    log::warn(log::cat(source, ": skipped ", out.skipped, " images smaller than ", height, "x", width,
                       " (resize them to the model input first)"));
  }
  return out;
}

}  // namespace arcforge::runtime
