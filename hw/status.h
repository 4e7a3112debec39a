// One small status type used everywhere in dpuemu: a code plus a message that names the field and
// the rule it breaks. Functions that can fail return Status or StatusOr<T>; nothing throws.
#ifndef DPUEMU_HW_STATUS_H_
#define DPUEMU_HW_STATUS_H_

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace dpuemu {

enum class StatusCode { kOk = 0, kInvalidArgument, kOutOfRange, kNotFound, kUnimplemented, kInternal };

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: weights.dtype: must be one of i8|u8|fp16|bf16, got 'f32'".
  std::string ToString() const;
  // Prefixes the message with a context, e.g. the file or structure the field belongs to.
  Status Annotate(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status OkStatus() { return Status(); }
inline Status InvalidArgument(std::string m) { return Status(StatusCode::kInvalidArgument, std::move(m)); }
inline Status OutOfRange(std::string m) { return Status(StatusCode::kOutOfRange, std::move(m)); }
inline Status NotFound(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
inline Status Unimplemented(std::string m) { return Status(StatusCode::kUnimplemented, std::move(m)); }
inline Status Internal(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT
  StatusOr(T value) : value_(std::move(value)) {}                                  // NOLINT
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace dpuemu

#define DPUEMU_CONCAT_INNER_(a, b) a##b
#define DPUEMU_CONCAT_(a, b) DPUEMU_CONCAT_INNER_(a, b)

#define DPUEMU_RETURN_IF_ERROR(expr)           \
  do {                                         \
    ::dpuemu::Status _st = (expr);             \
    if (!_st.ok()) return _st;                 \
  } while (0)

#define DPUEMU_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

#define DPUEMU_ASSIGN_OR_RETURN(lhs, expr) \
  DPUEMU_ASSIGN_OR_RETURN_IMPL_(DPUEMU_CONCAT_(_status_or_, __LINE__), lhs, expr)

#endif  // DPUEMU_HW_STATUS_H_
