#include "train/dist/collectives.hpp"

#include <cstdlib>
#include <map>
#include <type_traits>

#ifdef ARCFORGE_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef ARCFORGE_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace arcforge::train::dist {
namespace {

class Done : public PendingCollective {
 public:
  void wait() override {}
};

class SingleProcess : public Collectives {
 public:
  SingleProcess() : Collectives(0, 1) {}
  std::unique_ptr<PendingCollective> allreduce_async(torch::Tensor, Reduce) override {
    return std::make_unique<Done>();
  }
  torch::Tensor all_gather(const torch::Tensor& tensor) override { return tensor; }
  void broadcast(torch::Tensor, int) override {}
  void barrier() override {}
};

#ifdef ARCFORGE_WITH_GLOO

std::string describe(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

c10d::ReduceOp reduce_op(Reduce op) {
  switch (op) {
    case Reduce::sum: return c10d::ReduceOp::SUM;
    case Reduce::max: return c10d::ReduceOp::MAX;
    case Reduce::min: return c10d::ReduceOp::MIN;
  }
  return c10d::ReduceOp::SUM;
}

class C10dPending : public PendingCollective {
 public:
  C10dPending(c10::intrusive_ptr<c10d::Work> work, std::string what)
      : work_(std::move(work)), what_(std::move(what)) {}
  void wait() override {
    try {
      work_->wait();
    } catch (const std::exception& e) {
      throw CollectiveError(what_ + " failed: " + describe(e) +
                            " (a peer process stopped, or did not answer within the timeout)");
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::string what_;
};

c10::intrusive_ptr<c10d::Store> rendezvous(const DistEnv& env, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(env.master_port);
  store_options.isServer = env.rank == 0;
  store_options.numWorkers = static_cast<size_t>(env.world_size);
  store_options.waitWorkers = true;
  store_options.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
}

c10::intrusive_ptr<c10d::ProcessGroupGloo> make_gloo(const DistEnv& env, std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
  if (interface != nullptr && *interface != '\0')
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
  else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  options->threads = 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(rendezvous(env, timeout), env.rank, env.world_size, options);
}

#ifdef ARCFORGE_WITH_NCCL
c10::intrusive_ptr<c10d::ProcessGroupNCCL> make_nccl(const DistEnv& env, std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(rendezvous(env, timeout), env.rank, env.world_size, options);
}
#endif

// Any c10d process group (Gloo, NCCL: the same calls in libtorch 1.13 and 2.x).
template <class Group>
class C10dGroup : public Collectives {
 public:
  template <class Make>
  C10dGroup(const DistEnv& env, const char* backend, Make make) : Collectives(env.rank, env.world_size) {
    try {
      group_ = make();
    } catch (const std::exception& e) {
      throw CollectiveError(where() + "could not join the " + backend + " process group at " + env.master_addr +
                            ":" + std::to_string(env.master_port) + " (world size " +
                            std::to_string(env.world_size) + "): " + describe(e));
    }
  }

  // NCCL groups of PyTorch 2.x want an explicit shutdown (destroy_process_group's job in Python),
  // or they warn at exit that resources may leak. Older libtorch has no shutdown(); the check is
  // at compile time, so every version builds. Errors are swallowed: this runs while unwinding too.
  ~C10dGroup() override {
#ifdef ARCFORGE_WITH_NCCL
    if constexpr (std::is_same_v<Group, c10d::ProcessGroupNCCL> && requires(Group& g) { g.shutdown(); }) {
      try {
        if (group_) group_->shutdown();
      } catch (...) {
      }
    }
#endif
  }

  std::unique_ptr<PendingCollective> allreduce_async(torch::Tensor tensor, Reduce op) override {
    std::vector<torch::Tensor> tensors{std::move(tensor)};
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    return launch("all-reduce", [&] { return group_->allreduce(tensors, options); });
  }

  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    std::vector<torch::Tensor> inputs{tensor.contiguous()};
    std::vector<std::vector<torch::Tensor>> outputs(1);
    for (int r = 0; r < world_size(); ++r) outputs[0].push_back(torch::empty_like(inputs[0]));
    launch("all-gather", [&] { return group_->allgather(outputs, inputs); })->wait();
    return torch::cat(outputs[0], 0);
  }

  void broadcast(torch::Tensor tensor, int root) override {
    std::vector<torch::Tensor> tensors{std::move(tensor)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    launch("broadcast", [&] { return group_->broadcast(tensors, options); })->wait();
  }

  void barrier() override {
    launch("barrier", [&] { return group_->barrier(); })->wait();
  }

 private:
  std::string where() const {
    return "rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) + ": ";
  }
  template <class Start>
  std::unique_ptr<PendingCollective> launch(const char* what, Start start) {
    try {
      return std::make_unique<C10dPending>(start(), where() + what);
    } catch (const std::exception& e) {
      throw CollectiveError(where() + what + " failed: " + describe(e));
    }
  }

  c10::intrusive_ptr<Group> group_;
};

#endif

}  // namespace

void broadcast_all(Collectives& collectives, const std::vector<torch::Tensor>& tensors, int root) {
  if (collectives.world_size() == 1) return;
  std::map<c10::ScalarType, std::vector<torch::Tensor>> by_dtype;
  for (const auto& t : tensors) by_dtype[t.scalar_type()].push_back(t);
  for (auto& [dtype, group] : by_dtype) {
    std::vector<torch::Tensor> flat;
    for (const auto& t : group) flat.push_back(t.detach().reshape(-1));
    torch::Tensor packed = torch::cat(flat);
    collectives.broadcast(packed, root);
    torch::NoGradGuard no_grad;
    int64_t offset = 0;
    for (auto& t : group) {
      t.detach().copy_(packed.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

std::shared_ptr<Collectives> single_process_collectives() { return std::make_shared<SingleProcess>(); }

bool multi_process_supported() {
#ifdef ARCFORGE_WITH_GLOO
  return true;
#else
  return false;
#endif
}

std::shared_ptr<Collectives> connect(const DistEnv& env, const std::string& backend, bool cuda,
                                     std::chrono::milliseconds timeout) {
  if (backend != "auto" && backend != "gloo" && backend != "nccl")
    throw ConfigError("dist.backend '" + backend + "' is not one of auto, gloo, nccl");
  // A launcher's world of one still gets a real group (it exercises the backend); a plain run
  // does not need one.
  if (env.world_size == 1 && env.launcher == "single") return single_process_collectives();
#ifdef ARCFORGE_WITH_NCCL
  if (backend == "nccl" || (backend == "auto" && cuda)) {
    if (!cuda) throw ConfigError("dist.backend nccl needs train.device cuda");
    return std::make_shared<C10dGroup<c10d::ProcessGroupNCCL>>(env, "NCCL", [&] { return make_nccl(env, timeout); });
  }
#else
  (void)cuda;
  if (backend == "nccl")
    throw ConfigError("this build of arcforge has no NCCL process group (nccl.h and a CUDA libtorch were not "
                      "found at configure time); use dist.backend=gloo");
#endif
#ifdef ARCFORGE_WITH_GLOO
  return std::make_shared<C10dGroup<c10d::ProcessGroupGloo>>(env, "Gloo", [&] { return make_gloo(env, timeout); });
#else
  (void)timeout;
  throw ConfigError("this build of arcforge has no c10d Gloo support (libgloo-dev headers were not "
                    "found at configure time), so it cannot train with WORLD_SIZE=" +
                    std::to_string(env.world_size));
#endif
}

}  // namespace arcforge::train::dist
