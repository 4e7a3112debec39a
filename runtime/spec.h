// SPEC.json: one ZMConv layer for the dpuemu CLI, described by hardware teams with numpy tensors
// beside it (format and example in README.md, "The dpuemu CLI"). Parsing is strict: every field
// is checked for presence, type and range, an unknown field is an error, and each tensor's .npy
// dtype must be the declared dtype's (fp16: numpy float16; bf16: uint16 bit patterns). Every
// message starts with the spec file and the JSON field, e.g.
//   "layer.json: input.zero_point = 300: must be in [0, 255] (u8)".
#ifndef DPUEMU_RUNTIME_SPEC_H_
#define DPUEMU_RUNTIME_SPEC_H_

#include <string>

#include "hw/layer.h"
#include "hw/status.h"
#include "hw/target.h"
#include "runtime/execute.h"
#include "runtime/plan.h"

namespace dpuemu {

struct Spec {
  std::string path;  // the spec file
  const Target* target = nullptr;
  ConvLayer layer;   // name: the spec's "name", else the file name without ".json"
  PlanOptions plan;  // storage (sparsity, SE sizes) and split requests
  RunOptions run;    // the spec's optional "run" object; CLI flags override it
};

// Reads the spec and the .npy files it names (paths relative to the spec's directory).
StatusOr<Spec> LoadSpec(const std::string& path);
// The same from the spec's text; `path` names the file in messages and anchors relative paths.
StatusOr<Spec> ParseSpec(const std::string& text, const std::string& path);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_SPEC_H_
