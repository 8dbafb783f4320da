// Gradient buckets for data parallelism (see data_parallel.h for the protocol).
#include "parallel/data_parallel.h"

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"

namespace coil {

struct Bucket {
  std::vector<size_t> params;  // indices into State::params, reverse registration order
  DType dtype = DType::F32;
  Device device = Device::cpu();
  int64_t numel = 0;
  int64_t ready = 0;           // gradients arrived in this backward
  bool started = false;
  Tensor buffer;               // (numel) flat gradients, reduced in place
  std::shared_ptr<Work> work;
};

struct DataParallel::State {
  CommPtr comm;
  std::vector<Tensor> params;
  DataParallelOptions opt;
  std::vector<Bucket> buckets;
  std::vector<size_t> bucket_of;   // param -> bucket
  std::vector<int64_t> offset_of;  // param -> element offset in its bucket
  std::vector<char> ready;         // param -> gradient arrived in this backward
  std::vector<std::shared_ptr<AccumulateGrad>> accumulators;  // keep the hooked nodes alive
  bool sync = true;
  int64_t started_in_backward = 0, last_started_in_backward = 0;

  void on_grad(size_t i) {
    if (!sync) return;
    Bucket& b = buckets[bucket_of[i]];
    if (ready[i]) {
      COIL_CHECK(!b.started, "DataParallel: the gradient of parameter ", i, " (",
                 params[i].describe(), ") changed after its bucket was reduced; call finish() after "
                 "every backward of a step, or set_sync(false) for accumulating micro-batches");
      return;
    }
    ready[i] = 1;
    if (++b.ready == int64_t(b.params.size())) {
      start(b);
      ++started_in_backward;
    }
  }

  void start(Bucket& b) {
    NoGradGuard ng;
    if (!b.buffer.defined()) b.buffer = Tensor::empty({b.numel}, b.dtype, b.device);
    for (size_t i : b.params) {
      const Tensor& p = params[i];
      Tensor slot = b.buffer.narrow(0, offset_of[i], p.numel()).view(p.shape());
      Tensor g = p.grad();
      if (g.defined()) slot.copy_(g);
      else slot.zero_();
    }
    b.started = true;
    if (comm->size() == 1) b.work = std::make_shared<CompletedWork>();
    else b.work = comm->all_reduce_async(b.buffer, opt.average ? ReduceOp::Avg : ReduceOp::Sum);
  }

  void reset() {
    for (Bucket& b : buckets) {
      b.ready = 0;
      b.started = false;
      b.work.reset();
    }
    std::fill(ready.begin(), ready.end(), 0);
    last_started_in_backward = started_in_backward;
    started_in_backward = 0;
  }
};

DataParallel::DataParallel(CommPtr dp_group, const std::vector<Tensor>& params,
                           const DataParallelOptions& options)
    : state_(std::make_shared<State>()) {
  COIL_CHECK(dp_group != nullptr, "DataParallel: no dp communicator given");
  COIL_CHECK(options.bucket_mb > 0, "DataParallel: bucket_mb must be > 0, got ", options.bucket_mb);
  State& s = *state_;
  s.comm = std::move(dp_group);
  s.params = params;
  s.opt = options;
  const size_t n = params.size();
  s.bucket_of.assign(n, 0);
  s.offset_of.assign(n, 0);
  s.ready.assign(n, 0);
  const double cap = options.bucket_mb * 1024.0 * 1024.0;
  for (size_t k = n; k-- > 0;) {
    const Tensor& p = params[k];
    COIL_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "DataParallel: parameter ", k,
               " must be a leaf that requires grad, got ", p.defined() ? p.describe() : "undefined");
    COIL_CHECK(is_floating(p.dtype()) && p.dtype() != DType::BF16, "DataParallel: parameter ", k,
               " has dtype ", p.dtype(), "; gradients are reduced in f32 or f64");
    bool fresh = s.buckets.empty();
    if (!fresh) {
      const Bucket& last = s.buckets.back();
      fresh = last.dtype != p.dtype() || !(last.device == p.device()) ||
              double(last.numel) * double(dtype_size(last.dtype)) >= cap;
    }
    if (fresh) {
      s.buckets.emplace_back();
      s.buckets.back().dtype = p.dtype();
      s.buckets.back().device = p.device();
    }
    Bucket& b = s.buckets.back();
    s.bucket_of[k] = s.buckets.size() - 1;
    s.offset_of[k] = b.numel;
    b.params.push_back(k);
    b.numel += p.numel();
  }
  std::weak_ptr<State> weak = state_;
  for (size_t k = 0; k < n; ++k) {
    auto acc = grad_accumulator(params[k]);
    acc->post_hooks.push_back([weak, k](const Tensor&) {
      if (auto st = weak.lock()) st->on_grad(k);
    });
    s.accumulators.push_back(std::move(acc));
  }
}

DataParallel::~DataParallel() = default;

void DataParallel::finish() {
  State& s = *state_;
  if (!s.sync) {
    s.reset();
    return;
  }
  for (Bucket& b : s.buckets)
    if (!b.started) s.start(b);
  NoGradGuard ng;
  for (Bucket& b : s.buckets) {
    b.work->wait();
    for (size_t i : b.params) {
      const Tensor& p = s.params[i];
      p.set_grad(b.buffer.narrow(0, s.offset_of[i], p.numel()).view(p.shape()).clone());
    }
  }
  s.reset();
}

void DataParallel::set_sync(bool sync) { state_->sync = sync; }
bool DataParallel::sync() const { return state_->sync; }
size_t DataParallel::num_buckets() const { return state_->buckets.size(); }
std::vector<size_t> DataParallel::bucket_params(size_t b) const { return state_->buckets.at(b).params; }
int64_t DataParallel::buckets_started_in_backward() const { return state_->last_started_in_backward; }

void broadcast_parameters(Communicator& dp, const std::vector<Tensor>& params, int root) {
  if (dp.size() == 1) return;
  NoGradGuard ng;
  for (const Tensor& p : params) {
    if (p.is_contiguous()) {
      dp.broadcast(p.detach(), root);
      p.bump_version();
    } else {
      Tensor tmp = p.detach().contiguous();
      dp.broadcast(tmp, root);
      p.detach().copy_(tmp);
    }
  }
}

double reduce_mean(Communicator& group, double local_mean, double local_count) {
  std::vector<double> v = reduce_values(group, {local_mean * local_count, local_count});
  COIL_CHECK(v[1] > 0, "reduce_mean on ", group.name(), ": the total count is ", v[1]);
  return v[0] / v[1];
}

std::vector<double> reduce_values(Communicator& group, const std::vector<double>& values,
                                  ReduceOp op) {
  if (group.size() == 1 || values.empty()) return values;
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}, DType::F64);
  group.all_reduce(t, op);
  return t.to_vector();
}

}  // namespace coil
