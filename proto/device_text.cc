#include "tinyfed/proto/device_text.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace tinyfed::proto {

std::string DeviceText(std::string_view text, size_t max_bytes) {
  const std::string_view kept = text.substr(0, max_bytes);
  std::string out = absl::CHexEscape(absl::string_view(kept.data(), kept.size()));
  if (kept.size() < text.size()) absl::StrAppend(&out, "... (", text.size() - kept.size(), " more bytes)");
  return out;
}

}  // namespace tinyfed::proto
