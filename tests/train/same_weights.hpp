#pragma once
// Bit-identity of two trained models, for the resume and reproducibility tests.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "train/train/checkpoint.hpp"

namespace arcforge::test {

// Every parameter and buffer of `a` equals `b`'s of the same name, bit for bit.
inline void expect_same_weights(torch::nn::Module& a, torch::nn::Module& b, const std::string& what = "") {
  auto pb = b.named_parameters();
  for (const auto& item : a.named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << what << " " << item.key();
  auto bb = b.named_buffers();
  for (const auto& item : a.named_buffers())
    EXPECT_TRUE(torch::equal(item.value(), bb[item.key()])) << what << " " << item.key();
}

// Backbone and head (this process's shard of it).
inline void expect_same_model(train::TrainModules& a, train::TrainModules& b, const std::string& what = "") {
  expect_same_weights(*a.backbone, *b.backbone, what);
  expect_same_weights(*a.head, *b.head, what + " head");
}

}  // namespace arcforge::test
