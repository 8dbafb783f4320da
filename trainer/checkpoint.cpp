// HDF5 checkpoints through the C API (HDF5 >= 1.10): RAII handles, checked calls, atomic writes,
// validation of everything before any value reaches the model.
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <sstream>

#include "core/autograd/grad_mode.h"
#include "core/error.h"

namespace coil {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormatName = "coil-checkpoint";

// Messages name the file and the HDF5 call; HDF5's own stack printing is switched off (it would
// spread one error over many lines of stderr).
[[noreturn]] void h5_fail(const std::string& file, const std::string& call,
                          const std::string& object) {
  COIL_FAIL("checkpoint '", file, "': ", call, "(", object,
            ") failed (a truncated, corrupt or foreign file?)");
}

void quiet_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

// An owned hid_t, closed by the matching H5?close.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept {
    std::swap(id_, o.id_);
    std::swap(close_, o.close_);
    return *this;
  }
  Handle(const Handle&) = delete;
  ~Handle() {
    if (id_ >= 0 && close_) close_(id_);
  }
  hid_t get() const { return id_; }
  // Closes now and reports a failure (the file close flushes: its error matters).
  void close(const std::string& file, const char* call) {
    if (id_ < 0) return;
    const herr_t rc = close_(id_);
    id_ = -1;
    if (rc < 0) h5_fail(file, call, "");
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

struct H5 {
  std::string file;

  hid_t check(hid_t id, const char* call, const std::string& obj) const {
    if (id < 0) h5_fail(file, call, obj);
    return id;
  }
  void check_rc(herr_t rc, const char* call, const std::string& obj) const {
    if (rc < 0) h5_fail(file, call, obj);
  }

  // ---- writing ----
  Handle group(hid_t parent, const std::string& name) const {
    return {check(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                  "H5Gcreate2", name),
            H5Gclose};
  }
  void attr_raw(hid_t obj, const std::string& name, hid_t type, const void* value) const {
    Handle space(check(H5Screate(H5S_SCALAR), "H5Screate", name), H5Sclose);
    Handle a(check(H5Acreate2(obj, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                   "H5Acreate2", name),
             H5Aclose);
    check_rc(H5Awrite(a.get(), type, value), "H5Awrite", name);
  }
  void attr_int(hid_t obj, const std::string& name, int64_t v) const {
    attr_raw(obj, name, H5T_NATIVE_INT64, &v);
  }
  void attr_uint(hid_t obj, const std::string& name, uint64_t v) const {
    attr_raw(obj, name, H5T_NATIVE_UINT64, &v);
  }
  void attr_double(hid_t obj, const std::string& name, double v) const {
    attr_raw(obj, name, H5T_NATIVE_DOUBLE, &v);
  }
  void attr_string(hid_t obj, const std::string& name, const std::string& v) const {
    Handle type(check(H5Tcopy(H5T_C_S1), "H5Tcopy", name), H5Tclose);
    check_rc(H5Tset_size(type.get(), std::max<size_t>(v.size(), 1)), "H5Tset_size", name);
    check_rc(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "H5Tset_strpad", name);
    std::string padded = v;
    padded.resize(std::max<size_t>(v.size(), 1), '\0');
    attr_raw(obj, name, type.get(), padded.data());
  }
  Handle tensor(hid_t parent, const std::string& name, const Tensor& t) const {
    const Tensor c = t.detach().to(Device::cpu()).contiguous();
    COIL_CHECK(c.dtype() == DType::F32 || c.dtype() == DType::F64, "checkpoint '", file,
               "': tensor '", name, "' is ", c.describe(), "; only f32 and f64 are saved");
    const hid_t type = c.dtype() == DType::F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE;
    std::vector<hsize_t> dims(c.shape().begin(), c.shape().end());
    Handle space(check(dims.empty() ? H5Screate(H5S_SCALAR)
                                    : H5Screate_simple(int(dims.size()), dims.data(), nullptr),
                       "H5Screate_simple", name),
                 H5Sclose);
    Handle d(check(H5Dcreate2(parent, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT),
                   "H5Dcreate2", name),
             H5Dclose);
    if (c.numel() > 0)
      check_rc(H5Dwrite(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, c.data_ptr()), "H5Dwrite",
               name);
    return d;
  }

  // ---- reading ----
  Handle open_group(hid_t parent, const std::string& name) const {
    return {check(H5Gopen2(parent, name.c_str(), H5P_DEFAULT), "H5Gopen2", name), H5Gclose};
  }
  bool has_attr(hid_t obj, const std::string& name) const {
    const htri_t r = H5Aexists(obj, name.c_str());
    check_rc(r < 0 ? -1 : 0, "H5Aexists", name);
    return r > 0;
  }
  bool has_link(hid_t obj, const std::string& name) const {
    const htri_t r = H5Lexists(obj, name.c_str(), H5P_DEFAULT);
    check_rc(r < 0 ? -1 : 0, "H5Lexists", name);
    return r > 0;
  }
  Handle open_attr(hid_t obj, const std::string& name) const {
    if (!has_attr(obj, name)) COIL_FAIL("checkpoint '", file, "': missing attribute '", name, "'");
    return {check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "H5Aopen", name), H5Aclose};
  }
  H5T_class_t attr_class(hid_t obj, const std::string& name) const {
    Handle a = open_attr(obj, name);
    Handle type(check(H5Aget_type(a.get()), "H5Aget_type", name), H5Tclose);
    return H5Tget_class(type.get());
  }
  int64_t read_int(hid_t obj, const std::string& name) const {
    Handle a = open_attr(obj, name);
    Handle type(check(H5Aget_type(a.get()), "H5Aget_type", name), H5Tclose);
    if (H5Tget_class(type.get()) != H5T_INTEGER)
      COIL_FAIL("checkpoint '", file, "': attribute '", name, "' is not an integer");
    int64_t v = 0;
    check_rc(H5Aread(a.get(), H5T_NATIVE_INT64, &v), "H5Aread", name);
    return v;
  }
  uint64_t read_uint(hid_t obj, const std::string& name) const {
    Handle a = open_attr(obj, name);
    uint64_t v = 0;
    check_rc(H5Aread(a.get(), H5T_NATIVE_UINT64, &v), "H5Aread", name);
    return v;
  }
  double read_double(hid_t obj, const std::string& name) const {
    Handle a = open_attr(obj, name);
    double v = 0;
    check_rc(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v), "H5Aread", name);
    return v;
  }
  std::string read_string(hid_t obj, const std::string& name) const {
    Handle a = open_attr(obj, name);
    Handle type(check(H5Aget_type(a.get()), "H5Aget_type", name), H5Tclose);
    if (H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) != 0)
      COIL_FAIL("checkpoint '", file, "': attribute '", name,
                "' is not a fixed-length string (not written by coil?)");
    const size_t size = H5Tget_size(type.get());
    Handle mem(check(H5Tcopy(H5T_C_S1), "H5Tcopy", name), H5Tclose);
    check_rc(H5Tset_size(mem.get(), size), "H5Tset_size", name);
    check_rc(H5Tset_strpad(mem.get(), H5T_STR_NULLPAD), "H5Tset_strpad", name);
    std::string s(size, '\0');
    check_rc(H5Aread(a.get(), mem.get(), s.data()), "H5Aread", name);
    s.resize(std::strlen(s.c_str()));
    return s;
  }
  std::vector<std::string> attr_names(hid_t obj, const std::string& what) const {
    std::vector<std::string> names;
    auto cb = [](hid_t, const char* n, const H5A_info_t*, void* data) -> herr_t {
      static_cast<std::vector<std::string>*>(data)->push_back(n);
      return 0;
    };
    check_rc(H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, nullptr, cb, &names), "H5Aiterate2",
             what);
    return names;
  }
  std::vector<std::string> links(hid_t group, const std::string& what) const {
    std::vector<std::string> names;
    auto cb = [](hid_t, const char* n, const H5L_info_t*, void* data) -> herr_t {
      static_cast<std::vector<std::string>*>(data)->push_back(n);
      return 0;
    };
    check_rc(H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, nullptr, cb, &names), "H5Literate",
             what);
    return names;
  }
  // dtype name and shape of a dataset.
  std::pair<DType, std::vector<int64_t>> dataset_info(hid_t d, const std::string& path) const {
    Handle type(check(H5Dget_type(d), "H5Dget_type", path), H5Tclose);
    Handle space(check(H5Dget_space(d), "H5Dget_space", path), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    check_rc(rank < 0 ? -1 : 0, "H5Sget_simple_extent_ndims", path);
    std::vector<hsize_t> dims(rank);
    if (rank > 0)
      check_rc(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0 ? -1 : 0,
               "H5Sget_simple_extent_dims", path);
    if (H5Tget_class(type.get()) != H5T_FLOAT ||
        (H5Tget_size(type.get()) != 4 && H5Tget_size(type.get()) != 8))
      COIL_FAIL("checkpoint '", file, "': ", path, " is not an f32 or f64 tensor");
    return {H5Tget_size(type.get()) == 4 ? DType::F32 : DType::F64,
            std::vector<int64_t>(dims.begin(), dims.end())};
  }
  // Reads dataset `path` (relative to `parent`), which must have `like`'s shape and dtype.
  Tensor read_tensor(hid_t parent, const std::string& group, const std::string& name,
                     const Tensor& like) const {
    const std::string path = group + "/" + name;  // for messages
    if (!has_link(parent, name))
      COIL_FAIL("checkpoint '", file, "': missing tensor ", path, " (", like.describe(),
                " in this model)");
    Handle d(check(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), "H5Dopen2", path), H5Dclose);
    auto [dtype, shape] = dataset_info(d.get(), path);
    if (shape != like.shape() || dtype != like.dtype()) {
      std::ostringstream found;
      found << dtype_name(dtype) << " (";
      for (size_t i = 0; i < shape.size(); ++i) found << (i ? ", " : "") << shape[i];
      found << ")";
      COIL_FAIL("checkpoint '", file, "': ", path, " is ", found.str(), ", this model has ",
                like.describe());
    }
    Tensor t = Tensor::empty(like.shape(), like.dtype());
    const hid_t mem = like.dtype() == DType::F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE;
    if (t.numel() > 0)
      check_rc(H5Dread(d.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()), "H5Dread", path);
    return t;
  }
};

// Opens a checkpoint for reading after checking it is an HDF5 file with coil's format attributes.
Handle open_for_read(const H5& h5, int64_t* version) {
  quiet_hdf5();
  const std::string& file = h5.file;
  std::error_code ec;
  COIL_CHECK(fs::is_regular_file(file, ec), "checkpoint '", file, "': no such file");
  if (H5Fis_hdf5(file.c_str()) <= 0)
    COIL_FAIL("checkpoint '", file, "': not an HDF5 file (a foreign or truncated file)");
  Handle f(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (f.get() < 0)
    COIL_FAIL("checkpoint '", file, "': H5Fopen failed (a truncated or corrupt HDF5 file)");
  if (!h5.has_attr(f.get(), "format") || h5.attr_class(f.get(), "format") != H5T_STRING ||
      h5.read_string(f.get(), "format") != kFormatName)
    COIL_FAIL("checkpoint '", file, "': an HDF5 file but not a coil checkpoint (no format = '",
              kFormatName, "' attribute)");
  *version = h5.read_int(f.get(), "format_version");
  COIL_CHECK(*version == kCheckpointFormatVersion, "checkpoint '", file, "': format version ",
             *version, ", this coil reads version ", kCheckpointFormatVersion);
  return f;
}

CheckpointMeta read_meta(const H5& h5, hid_t f) {
  CheckpointMeta m;
  m.step = h5.read_int(f, "step");
  m.tokens = h5.read_int(f, "tokens");
  m.skipped_steps = h5.read_int(f, "skipped_steps");
  m.bad_in_a_row = h5.read_int(f, "bad_in_a_row");
  m.config_yaml = h5.read_string(f, "config_yaml");
  m.model_config_yaml = h5.read_string(f, "model_config_yaml");
  {
    Handle s = h5.open_group(f, "schedule");
    try {
      m.schedule.kind = schedule_kind_from_string(h5.read_string(s.get(), "kind"));
    } catch (const Error& e) {
      COIL_FAIL("checkpoint '", h5.file, "': /schedule: ", e.message());
    }
    m.schedule.peak_lr = h5.read_double(s.get(), "peak_lr");
    m.schedule.warmup_steps = h5.read_int(s.get(), "warmup_steps");
    m.schedule.decay_end_step = h5.read_int(s.get(), "decay_end_step");
    m.schedule.final_lr = h5.read_double(s.get(), "final_lr");
  }
  Handle rng = h5.open_group(f, "rng");
  for (const std::string& name : h5.links(rng.get(), "/rng")) {
    Handle g = h5.open_group(rng.get(), name);
    m.rng[name] = {h5.read_uint(g.get(), "seed"), h5.read_uint(g.get(), "offset")};
  }
  Handle data = h5.open_group(f, "data");
  for (const std::string& name : h5.links(data.get(), "/data")) {
    Handle g = h5.open_group(data.get(), name);
    SourceState& st = m.sources[name];
    for (const std::string& key : h5.attr_names(g.get(), "/data/" + name)) {
      if (h5.attr_class(g.get(), key) == H5T_STRING)
        st[key] = h5.read_string(g.get(), key);
      else
        st[key] = h5.read_int(g.get(), key);
    }
  }
  return m;
}

// The dotted key path of each line of a block-style YAML text, from its indents ("model.linear.form"),
// fed one line at a time.
class KeyPaths {
 public:
  std::string next(const std::string& line) {
    const size_t indent = line.find_first_not_of(' ');
    const std::string key = indent == std::string::npos ? "" : line.substr(indent, line.find(':') - indent);
    while (!stack_.empty() && stack_.back().first >= indent) stack_.pop_back();
    std::string path;
    for (const auto& [_, k] : stack_) path += k + ".";
    path += key;
    stack_.push_back({indent, key});
    return path;
  }

 private:
  std::vector<std::pair<size_t, std::string>> stack_;  // (indent, key)
};

// The first line where two YAML texts differ, as "key.path: 'a' vs 'b'".
std::string first_difference(const std::string& a, const std::string& b) {
  std::istringstream sa(a), sb(b);
  std::string la, lb;
  KeyPaths paths;
  while (true) {
    const bool ga = bool(std::getline(sa, la)), gb = bool(std::getline(sb, lb));
    if (!ga && !gb) return "";
    const std::string path = paths.next(ga ? la : lb);
    if (!ga || !gb || la != lb) {
      auto trim = [](const std::string& s) {
        const size_t p = s.find_first_not_of(' ');
        return p == std::string::npos ? std::string("(nothing)") : s.substr(p);
      };
      return path + ": checkpoint has '" + (ga ? trim(la) : "(nothing)") + "', this run has '" +
             (gb ? trim(lb) : "(nothing)") + "'";
    }
  }
}

// The optimizer state of each model parameter, by name.
std::vector<std::pair<std::string, const AdamWParamState*>> optimizer_states(
    const Module& model, const AdamW& opt, const NamedTensors& params) {
  std::vector<std::pair<std::string, const AdamWParamState*>> out;
  for (const auto& [name, p] : params) {
    const AdamWParamState* found = nullptr;
    for (size_t g = 0; g < opt.num_groups() && !found; ++g)
      for (size_t i = 0; i < opt.group(g).params.size(); ++i)
        if (opt.group(g).params[i].same(p)) found = &opt.state(g, i);
    COIL_CHECK(found, "checkpoint: parameter '", name, "' is not in the optimizer");
    out.push_back({name, found});
  }
  (void)model;
  return out;
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  COIL_CHECK(fd >= 0, "checkpoint: cannot open '", path, "' to fsync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  COIL_CHECK(rc == 0, "checkpoint: fsync of '", path, "' failed");
}

}  // namespace

void write_checkpoint(const std::string& path, const Module& model, const AdamW& opt,
                      const CheckpointMeta& meta, const CheckpointWriteHooks& hooks) {
  CheckpointTensors t;
  t.params = model.named_parameters();
  for (const auto& [name, s] : optimizer_states(model, opt, t.params)) t.optim[name] = *s;
  t.step_count = opt.step_count();
  write_checkpoint(path, t, meta, hooks);
}

void write_checkpoint(const std::string& path, const CheckpointTensors& tensors,
                      const CheckpointMeta& meta, const CheckpointWriteHooks& hooks) {
  quiet_hdf5();
  const std::string tmp = path + ".tmp";
  const H5 h5{tmp};
  const NamedTensors& params = tensors.params;
  std::vector<std::pair<std::string, const AdamWParamState*>> states;
  for (const auto& [name, p] : params) {
    auto it = tensors.optim.find(name);
    COIL_CHECK(it != tensors.optim.end(), "checkpoint: parameter '", name,
               "' has no optimizer state");
    states.push_back({name, &it->second});
  }
  try {
    Handle f(
        h5.check(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "H5Fcreate", tmp),
        H5Fclose);
    const hid_t root = f.get();
    h5.attr_string(root, "format", kFormatName);
    h5.attr_int(root, "format_version", kCheckpointFormatVersion);
    h5.attr_int(root, "step", meta.step);
    h5.attr_int(root, "tokens", meta.tokens);
    h5.attr_int(root, "skipped_steps", meta.skipped_steps);
    h5.attr_int(root, "bad_in_a_row", meta.bad_in_a_row);
    h5.attr_string(root, "config_yaml", meta.config_yaml);
    h5.attr_string(root, "model_config_yaml", meta.model_config_yaml);
    {
      Handle g = h5.group(root, "params");
      for (const auto& [name, p] : params) h5.tensor(g.get(), name, p);
    }
    {
      Handle g = h5.group(root, "optim");
      h5.attr_int(g.get(), "step_count", tensors.step_count);
      Handle gm = h5.group(g.get(), "m"), gv = h5.group(g.get(), "v");
      for (const auto& [name, s] : states) {
        Handle d = h5.tensor(gm.get(), name, s->m);
        h5.attr_int(d.get(), "step", s->step);
        h5.tensor(gv.get(), name, s->v);
      }
    }
    {
      Handle g = h5.group(root, "schedule");
      h5.attr_string(g.get(), "kind", schedule_kind_name(meta.schedule.kind));
      h5.attr_double(g.get(), "peak_lr", meta.schedule.peak_lr);
      h5.attr_int(g.get(), "warmup_steps", meta.schedule.warmup_steps);
      h5.attr_int(g.get(), "decay_end_step", meta.schedule.decay_end_step);
      h5.attr_double(g.get(), "final_lr", meta.schedule.final_lr);
    }
    {
      Handle g = h5.group(root, "rng");
      for (const auto& [name, st] : meta.rng) {
        Handle s = h5.group(g.get(), name);
        h5.attr_uint(s.get(), "seed", st.first);
        h5.attr_uint(s.get(), "offset", st.second);
      }
    }
    {
      Handle g = h5.group(root, "data");
      for (const auto& [name, st] : meta.sources) {
        Handle s = h5.group(g.get(), name);
        for (const auto& [key, v] : st) {
          if (const int64_t* i = std::get_if<int64_t>(&v))
            h5.attr_int(s.get(), key, *i);
          else
            h5.attr_string(s.get(), key, std::get<std::string>(v));
        }
      }
    }
    h5.check_rc(H5Fflush(root, H5F_SCOPE_GLOBAL), "H5Fflush", tmp);
    f.close(tmp, "H5Fclose");
    fsync_path(tmp, false);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  if (hooks.before_rename) hooks.before_rename(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::error_code ec;
    fs::remove(tmp, ec);
    COIL_FAIL("checkpoint: rename '", tmp, "' -> '", path, "' failed");
  }
  const fs::path parent = fs::path(path).parent_path();
  fsync_path(parent.empty() ? "." : parent.string(), true);
}

// The model config without the keys that choose only how the same function is computed: activation
// recompute, the linear mixers' form and chunking, the Mamba scans' chunk lengths. A checkpoint
// resumes across them (a long-context run may switch recompute on or the chunked form in).
std::string without_execution_keys(const std::string& yaml) {
  static const char* const kExecutionOnly[] = {"recompute", "linear.form", "linear.chunked_from",
                                               "linear.chunk_size", "mamba2.chunk_size",
                                               "mamba1.chunk_size"};
  std::istringstream in(yaml);
  std::string line, out;
  KeyPaths paths;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(' ') != std::string::npos) {
      const std::string path = paths.next(line);
      bool skip = false;
      for (const char* k : kExecutionOnly)  // the key itself, or it under any parent
        skip = skip || path == k || path.ends_with(std::string(".") + k);
      if (skip) continue;
    }
    out += line + "\n";
  }
  return out;
}

CheckpointMeta read_checkpoint(const std::string& path, Module& model, AdamW& opt,
                               const std::string& expected_model_yaml) {
  const H5 h5{path};
  int64_t version = 0;
  Handle f = open_for_read(h5, &version);
  CheckpointMeta meta = read_meta(h5, f.get());
  if (!expected_model_yaml.empty()) {
    const std::string stored = without_execution_keys(meta.model_config_yaml);
    const std::string expected = without_execution_keys(expected_model_yaml);
    if (stored != expected)
      COIL_FAIL("checkpoint '", path, "' is of a different model config: ", first_difference(stored, expected));
  }

  const NamedTensors params = model.named_parameters();
  const auto states = optimizer_states(model, opt, params);
  std::vector<Tensor> values, ms, vs;
  std::vector<int64_t> steps;
  Handle gp = h5.open_group(f.get(), "params");
  Handle go = h5.open_group(f.get(), "optim");
  Handle gm = h5.open_group(go.get(), "m"), gv = h5.open_group(go.get(), "v");
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].first;
    values.push_back(h5.read_tensor(gp.get(), "/params", name, params[i].second));
    ms.push_back(h5.read_tensor(gm.get(), "/optim/m", name, states[i].second->m));
    vs.push_back(h5.read_tensor(gv.get(), "/optim/v", name, states[i].second->v));
    Handle d(h5.check(H5Dopen2(gm.get(), name.c_str(), H5P_DEFAULT), "H5Dopen2", name), H5Dclose);
    steps.push_back(h5.read_int(d.get(), "step"));
  }
  for (const std::string& name : h5.links(gp.get(), "/params")) {
    const bool known =
        std::any_of(params.begin(), params.end(), [&](const auto& p) { return p.first == name; });
    COIL_CHECK(known, "checkpoint '", path, "': holds tensor /params/", name,
               " that this model does not have");
  }
  const int64_t step_count = h5.read_int(go.get(), "step_count");
  f.close(path, "H5Fclose");

  // Everything read and checked: now overwrite the model and the optimizer.
  NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].second.detach().copy_(values[i]);
    AdamWParamState* s = const_cast<AdamWParamState*>(states[i].second);
    s->m.copy_(ms[i]);
    s->v.copy_(vs[i]);
    s->step = steps[i];
  }
  opt.set_step_count(step_count);
  return meta;
}

CheckpointInfo inspect_checkpoint(const std::string& path) {
  const H5 h5{path};
  CheckpointInfo info;
  Handle f = open_for_read(h5, &info.format_version);
  info.meta = read_meta(h5, f.get());
  for (const char* group : {"params", "optim/m", "optim/v"}) {
    Handle g = h5.open_group(f.get(), group);
    for (const std::string& name : h5.links(g.get(), std::string("/") + group)) {
      const std::string p = std::string("/") + group + "/" + name;
      Handle d(h5.check(H5Dopen2(g.get(), name.c_str(), H5P_DEFAULT), "H5Dopen2", p), H5Dclose);
      auto [dtype, shape] = h5.dataset_info(d.get(), p);
      info.tensors.push_back({p, dtype_name(dtype), shape});
    }
  }
  f.close(path, "H5Fclose");
  return info;
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "step_%08lld.h5", (long long)step);
  return (fs::path(dir) / name).string();
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  static const std::regex pattern(R"(step_(\d+)\.h5)");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && std::regex_match(name, m, pattern))
      out.push_back({std::stoll(m[1].str()), entry.path().string()});
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string latest_complete_checkpoint(const std::string& dir, std::vector<std::string>* skipped) {
  const auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      inspect_checkpoint(it->second);
      return it->second;
    } catch (const Error& e) {
      if (skipped) skipped->push_back(e.message());
    }
  }
  return "";
}

void prune_checkpoints(const std::string& dir, int64_t keep_last) {
  if (keep_last <= 0) return;
  const auto all = list_checkpoints(dir);
  for (size_t i = 0; i + size_t(keep_last) < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i].second, ec);
    COIL_CHECK(!ec, "checkpoint: cannot delete old checkpoint '", all[i].second,
               "': ", ec.message());
  }
}

}  // namespace coil
