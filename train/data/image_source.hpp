#pragma once
// A labelled image dataset with random access to each sample's encoded bytes: the input of the
// training Loader (train/data/loader.hpp). Two kinds, both opened by open_image_source:
//   RecordIO      InsightFace's train.rec + train.idx (the samples arcface_torch's MXFaceDataset
//                 yields: keys 1..N under an InsightFace record 0, else every key of the index)
//   image folder  root/<identity>/<image> (include/arcforge/data/image_folder.hpp)
// Nothing here decodes pixels, and no libtorch: the loader's workers decode.
#include <cstdint>
#include <memory>
#include <string>

namespace arcforge::data {

// Every method is const and safe to call from any number of threads at once.
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;         // samples, indexed 0 .. size()-1
  virtual int64_t num_classes() const = 0;  // labels are 0 .. num_classes()-1
  virtual int64_t label(int64_t index) const = 0;
  // The encoded image (JPEG/PNG/WebP bytes, unchanged). Throws InputError naming describe(index)
  // when the bytes cannot be read.
  virtual std::string read(int64_t index) const = 0;
  // Where sample `index` lives, to prefix error messages: "x/train.rec: key 12 at offset 3456"
  // or "root/0001/a.jpg".
  virtual std::string describe(int64_t index) const = 0;
  // One line for logs: "x/train.rec (RecordIO): 5822653 images, 85742 classes".
  virtual std::string summary() const = 0;
};

// `path` is
//   - a .rec file, read through the .idx beside it ("train.rec" -> "train.idx"), or
//   - a folder holding train.rec and train.idx (arcface_torch's config.rec convention), or
//   - any other folder: an image folder root/<identity>/<image>.
// Labels are checked once here (RecordIO: every header is read; folder: the folder scan), so a
// Loader never meets a bad label mid-epoch. Throws InputError naming the path on any problem.
std::unique_ptr<ImageSource> open_image_source(const std::string& path);

}  // namespace arcforge::data
