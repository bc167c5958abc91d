// Fuzzes ReadCsv as clinics' exports meet it: the first byte picks the
// options (delimiter given or detected, missing-value policy, label codes,
// an image shape), the rest is the file. Nothing may crash, and a dataset
// that is accepted must hold together: every label a class, as many
// features as rows times the sample size, none of them NaN.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "tinyfed/models/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using tinyfed::models::CsvOptions;
  using tinyfed::models::MissingValues;
  static const std::string path = "/tmp/tinyfed-csv-fuzz-" + std::to_string(getpid()) + ".csv";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
  }
  const uint8_t pick = data[0];
  CsvOptions options;
  options.delimiter = "\0,;\t|"[pick % 5];
  options.missing = static_cast<MissingValues>((pick / 5) % 3);
  options.labels_as_names = (pick / 15) % 2 == 1;
  if ((pick / 30) % 2 == 1) options.shape = {2, 2, 1};
  if ((pick / 60) % 2 == 1) options.ignore_columns = {"0", "id"};
  options.limits.max_line_bytes = 4096;
  options.limits.max_bytes = 1 << 20;
  auto d = tinyfed::models::ReadCsv(path, options);
  if (!d.ok()) return 0;
  if (d->features.size() != d->size() * d->feature_size() || d->num_classes() < 2) std::abort();
  for (int label : d->labels) {
    if (label < 0 || label >= d->num_classes()) std::abort();
  }
  for (float x : d->features) {
    if (!std::isfinite(x)) std::abort();
  }
  return 0;
}
