#include "tinyfed/aggregator/status_page.h"

#include <algorithm>
#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/dp/ledger.h"

namespace tinyfed::aggregator {
namespace {

using absl::StrAppend;
using absl::StrAppendFormat;
using absl::StrCat;

std::string Iso(absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()); }
std::string Iso(const std::optional<absl::Time>& t) { return t ? Iso(*t) : ""; }

std::optional<absl::Time> FromMillis(int64_t ms) {
  if (ms <= 0) return std::nullopt;
  return absl::FromUnixMillis(ms);
}

std::string Html(std::string_view text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        // Control characters a device might send are shown as '?'.
        out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    }
  }
  return out;
}

// "3 min ago" style age of `t` at `now`.
std::string Age(const std::optional<absl::Time>& t, absl::Time now) {
  if (!t) return "never";
  const double s = std::max(0.0, absl::ToDoubleSeconds(now - *t));
  if (s < 120) return absl::StrFormat("%.0f s ago", s);
  if (s < 7200) return absl::StrFormat("%.0f min ago", s / 60);
  if (s < 172800) return absl::StrFormat("%.0f h ago", s / 3600);
  return absl::StrFormat("%.0f days ago", s / 86400);
}

// A line chart of `values` (one per round) as inline SVG, with its largest
// value marked; `limit`, if positive, is drawn as a dashed line.
std::string LineChart(const std::vector<double>& values, double limit, const std::string& label) {
  constexpr double kWidth = 560, kHeight = 140, kPad = 24;
  double top = 0;
  for (double v : values) top = std::max(top, v);
  // A budget far above what is spent would flatten the series: it is drawn
  // only when it is within reach of the chart, and named either way.
  const bool limit_drawn = limit > 0 && (top == 0 || limit <= 2 * top);
  if (limit_drawn) top = std::max(top, limit);
  if (top <= 0) top = 1;
  top *= 1.05;
  auto x = [&](size_t i) { return kPad + (values.size() < 2 ? 0 : (kWidth - 2 * kPad) * i / (values.size() - 1.0)); };
  auto y = [&](double v) { return kHeight - kPad - (kHeight - 2 * kPad) * v / top; };
  std::string svg =
      absl::StrFormat(R"(<svg role="img" aria-label="%s" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f">)"
                      R"(<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" class="axis"/>)",
                      Html(label), kWidth, kHeight, kWidth, kHeight, kPad, y(0), kWidth - kPad, y(0));
  if (limit_drawn) {
    StrAppendFormat(&svg, R"(<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" class="limit"/>)", kPad, y(limit),
                    kWidth - kPad, y(limit));
    StrAppendFormat(&svg, R"(<text x="%.0f" y="%.1f">budget %.3g</text>)", kWidth - kPad - 90, y(limit) - 4, limit);
  } else if (limit > 0) {
    StrAppendFormat(&svg, R"(<text x="%.0f" y="14">budget %.3g (above the chart)</text>)", kWidth - kPad - 170, limit);
  }
  if (!values.empty()) {
    std::string points;
    for (size_t i = 0; i < values.size(); ++i) StrAppendFormat(&points, "%.1f,%.1f ", x(i), y(values[i]));
    StrAppendFormat(&svg, R"(<polyline points="%s" class="series"/>)", points);
    StrAppendFormat(&svg, R"(<text x="%.0f" y="14">%s: %.4g (latest)</text>)", kPad, Html(label), values.back());
  } else {
    StrAppendFormat(&svg, R"(<text x="%.0f" y="14">%s: no rounds yet</text>)", kPad, Html(label));
  }
  return svg + "</svg>";
}

// A confidence histogram as a row of small bars.
std::string Bars(const std::vector<uint32_t>& counts) {
  if (counts.empty()) return "";
  const double top = std::max<double>(1, *std::max_element(counts.begin(), counts.end()));
  constexpr double kBar = 6, kHeight = 24;
  std::string svg = absl::StrFormat(R"(<svg class="bars" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f">)",
                                    kBar * counts.size(), kHeight, kBar * counts.size(), kHeight);
  for (size_t i = 0; i < counts.size(); ++i) {
    const double h = kHeight * counts[i] / top;
    StrAppendFormat(&svg, R"(<rect x="%.0f" y="%.1f" width="%.0f" height="%.1f"/>)", kBar * i, kHeight - h, kBar - 1,
                    h);
  }
  return svg + "</svg>";
}

constexpr const char* kStyle = R"css(
body{font-family:system-ui,sans-serif;margin:1.5em;color:#1d2329}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{padding:.25em .7em;border-bottom:1px solid #dde;text-align:left}
th{background:#f1f3f6}.num{text-align:right}.warn{color:#a4330e}.ok{color:#1f6f3a}
.axis{stroke:#999}.limit{stroke:#c44;stroke-dasharray:4 3}.series{fill:none;stroke:#2364aa;stroke-width:2}
svg text{font-size:11px;fill:#444}.bars rect{fill:#2364aa}.summary span{margin-right:2em}
)css";

}  // namespace

absl::StatusOr<std::unique_ptr<StatusReader>> StatusReader::Open(const Config& config) {
  auto reader = std::unique_ptr<StatusReader>(new StatusReader());
  reader->epsilon_budget_ = config.dp.epsilon_budget;
  reader->delta_ = config.dp.delta;
  TINYFED_ASSIGN_OR_RETURN(reader->state_, AggregatorState::Open(config.state_dir));
  TINYFED_ASSIGN_OR_RETURN(reader->ledger_,
                           dp::PrivacyLedger::Open(config.state_dir / "ledger.db",
                                                   {.epsilon = config.dp.epsilon_budget, .delta = config.dp.delta}));
  TINYFED_ASSIGN_OR_RETURN(reader->devices_, DeviceRegistry::Open(config.state_dir));
  return reader;
}

StatusReader::~StatusReader() = default;

absl::StatusOr<FederationStatus> StatusReader::Read(absl::Time now) {
  FederationStatus status;
  status.read_at = now;
  TINYFED_ASSIGN_OR_RETURN(status.rounds, state_->Rounds());
  TINYFED_ASSIGN_OR_RETURN(status.models, state_->Models());
  TINYFED_ASSIGN_OR_RETURN(status.rollouts, state_->Rollouts());
  TINYFED_ASSIGN_OR_RETURN(status.drift, state_->DriftFlags());
  TINYFED_ASSIGN_OR_RETURN(dp::PrivacySpent spent, ledger_->Spent());
  status.epsilon_spent = spent.epsilon;
  status.epsilon_budget = epsilon_budget_;
  status.delta = delta_;

  std::map<std::string, FleetDevice> fleet;
  TINYFED_ASSIGN_OR_RETURN(std::vector<Device> enrolled, devices_->List());
  for (const Device& d : enrolled) {
    FleetDevice& f = fleet[d.device_id];
    f.device_id = d.device_id;
    f.enrolled = d.enrolled;
    f.revoked = d.revoked;
  }
  TINYFED_ASSIGN_OR_RETURN(std::vector<DeviceRecord> population, state_->Devices());
  for (const DeviceRecord& d : population) {
    FleetDevice& f = fleet[d.device_id];
    f.device_id = d.device_id;
    f.first_seen = FromMillis(d.first_seen_ms);
    f.last_report = FromMillis(d.telemetry_ms);
    if (d.telemetry_json.empty()) continue;
    // The engine wrote this JSON from a validated report; a row that does
    // not parse (a newer writer, a damaged file) shows as no telemetry.
    const nlohmann::json t = nlohmann::json::parse(d.telemetry_json, nullptr, /*allow_exceptions=*/false);
    if (!t.is_object()) continue;
    f.model_version = t.value("model_version", uint64_t{0});
    f.holdout_accuracy = t.value("holdout_accuracy", 0.0);
    f.holdout_samples = t.value("holdout_samples", uint64_t{0});
    f.confidence_histogram = t.value("confidence_histogram", std::vector<uint32_t>{});
    f.class_counts = t.value("class_counts", std::vector<uint64_t>{});
    f.model_status = t.value("model_status", std::string());
  }
  for (auto& [id, f] : fleet) status.devices.push_back(std::move(f));
  return status;
}

std::string StatusPageHtml(const FederationStatus& s) {
  std::string page =
      StrCat("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>tinyfed aggregator</title><style>",
             kStyle, "</style></head><body><h1>tinyfed aggregator</h1>");
  const uint64_t latest = s.models.empty() ? 0 : s.models.back().version;
  int64_t done = 0, aborted = 0;
  for (const RoundRecord& r : s.rounds) {
    if (r.state == "done") ++done;
    if (r.state == "aborted") ++aborted;
  }
  StrAppendFormat(&page,
                  "<p class=\"summary\"><span id=\"model\">model v%d</span><span id=\"rounds\">%d rounds done, %d "
                  "aborted</span><span id=\"epsilon\">epsilon %.4f of %.4g (delta %.3g)</span><span id=\"fleet\">%d "
                  "devices</span><span>read %s</span></p>",
                  latest, done, aborted, s.epsilon_spent, s.epsilon_budget, s.delta, s.devices.size(), Iso(s.read_at));

  std::vector<double> epsilon, survivors;
  for (const RoundRecord& r : s.rounds) {
    if (r.state != "done") continue;
    epsilon.push_back(r.epsilon);
    survivors.push_back(r.survivors);
  }
  StrAppend(&page, "<h2>Privacy and survivors over rounds</h2><div>",
            LineChart(epsilon, s.epsilon_budget, "epsilon spent"), "</div><div>",
            LineChart(survivors, 0, "survivors per round"), "</div>");

  StrAppend(&page,
            "<h2>Fleet</h2><table id=\"fleet-table\"><tr><th>device</th><th>enrolled</th><th>last report</th>"
            "<th class=\"num\">model</th><th class=\"num\">held-out accuracy</th><th class=\"num\">samples</th>"
            "<th>confidence</th><th>refused a model</th></tr>");
  for (const FleetDevice& d : s.devices) {
    const bool behind = d.last_report && d.model_version < latest;
    StrAppendFormat(&page,
                    "<tr><td>%s%s</td><td>%s</td><td>%s</td><td class=\"num%s\">%s</td><td class=\"num\">%s</td><td "
                    "class=\"num\">%s</td><td>%s</td><td class=\"warn\">%s</td></tr>",
                    Html(d.device_id), d.revoked ? " <span class=\"warn\">(revoked)</span>" : "",
                    d.enrolled ? Iso(*d.enrolled) : "-", Age(d.last_report, s.read_at), behind ? " warn" : "",
                    d.last_report ? StrCat("v", d.model_version) : "-",
                    d.last_report ? absl::StrFormat("%.1f%%", 100 * d.holdout_accuracy) : "-",
                    d.last_report ? StrCat(d.holdout_samples) : "-", Bars(d.confidence_histogram),
                    Html(d.model_status));
  }
  StrAppend(&page, "</table>");

  StrAppend(&page,
            "<h2>Rounds</h2><table id=\"rounds-table\"><tr><th class=\"num\">round</th><th>state</th><th>started</th>"
            "<th class=\"num\">selected</th><th class=\"num\">survivors</th><th class=\"num\">model</th>"
            "<th class=\"num\">epsilon after</th><th>why it aborted</th></tr>");
  // Newest first, the last 50: the whole history is in /status.json.
  const size_t shown = std::min<size_t>(s.rounds.size(), 50);
  for (size_t k = 0; k < shown; ++k) {
    const RoundRecord& r = s.rounds[s.rounds.size() - 1 - k];
    StrAppendFormat(&page,
                    "<tr><td class=\"num\">%d</td><td class=\"%s\">%s</td><td>%s</td><td class=\"num\">%d</td><td "
                    "class=\"num\">%d</td><td class=\"num\">%s</td><td class=\"num\">%s</td><td>%s</td></tr>",
                    r.round_id,
                    r.state == "done"      ? "ok"
                    : r.state == "aborted" ? "warn"
                                           : "",
                    Html(r.state), Iso(FromMillis(r.started_ms)), r.selected, r.survivors,
                    r.model_version ? StrCat("v", r.model_version) : "-",
                    r.state == "done" ? absl::StrFormat("%.4f", r.epsilon) : "-", Html(r.reason));
  }
  StrAppend(&page, "</table>");

  StrAppend(&page, "<h2>Drift</h2><table id=\"drift-table\"><tr><th>scope</th><th>since</th><th>evidence</th></tr>");
  for (const DriftFlag& f : s.drift) {
    StrAppendFormat(&page, "<tr><td class=\"warn\">%s</td><td>%s</td><td>%s</td></tr>", Html(f.scope),
                    Iso(FromMillis(f.flagged_ms)), Html(f.reason));
  }
  StrAppend(&page, "</table>");

  StrAppend(&page,
            "<h2>Rollouts</h2><table id=\"rollouts-table\"><tr><th class=\"num\">model</th><th>state</th>"
            "<th class=\"num\">others kept</th><th>decided by</th><th>evidence</th><th class=\"num\">rolled back "
            "as</th></tr>");
  for (size_t k = 0; k < std::min<size_t>(s.rollouts.size(), 50); ++k) {
    const RolloutRecord& r = s.rollouts[k];
    StrAppendFormat(&page,
                    "<tr><td class=\"num\">v%d</td><td class=\"%s\">%s</td><td class=\"num\">v%d</td><td>%s</td>"
                    "<td>%s</td><td class=\"num\">%s</td></tr>",
                    r.version,
                    r.state == "rolled_back" ? "warn"
                    : r.state == "promoted"  ? "ok"
                                             : "",
                    Html(r.state), r.previous, Html(r.decided_by), Html(r.reason),
                    r.rollback_version ? StrCat("v", r.rollback_version) : "-");
  }
  StrAppend(&page, "</table>");

  StrAppend(&page,
            "<h2>Published models</h2><table id=\"models-table\"><tr><th class=\"num\">version</th><th "
            "class=\"num\">round</th><th>bundle SHA-256</th></tr>");
  for (auto it = s.models.rbegin(); it != s.models.rend(); ++it) {
    StrAppendFormat(&page, "<tr><td class=\"num\">v%d</td><td class=\"num\">%s</td><td><code>%s</code></td></tr>",
                    it->version, it->round_id > 0 ? StrCat(it->round_id) : "initial",
                    absl::BytesToHexString(it->bundle_sha256));
  }
  StrAppend(&page, "</table></body></html>\n");
  return page;
}

std::string StatusJson(const FederationStatus& s) {
  nlohmann::json out = {{"read_at", Iso(s.read_at)},
                        {"epsilon_spent", s.epsilon_spent},
                        {"epsilon_budget", s.epsilon_budget},
                        {"delta", s.delta}};
  out["devices"] = nlohmann::json::array();
  for (const FleetDevice& d : s.devices) {
    out["devices"].push_back({{"device_id", d.device_id},
                              {"enrolled", Iso(d.enrolled)},
                              {"revoked", Iso(d.revoked)},
                              {"first_seen", Iso(d.first_seen)},
                              {"last_report", Iso(d.last_report)},
                              {"model_version", d.model_version},
                              {"holdout_accuracy", d.holdout_accuracy},
                              {"holdout_samples", d.holdout_samples},
                              {"confidence_histogram", d.confidence_histogram},
                              {"class_counts", d.class_counts},
                              {"model_status", d.model_status}});
  }
  out["rounds"] = nlohmann::json::array();
  for (const RoundRecord& r : s.rounds) {
    out["rounds"].push_back({{"round_id", r.round_id},
                             {"state", r.state},
                             {"started", Iso(FromMillis(r.started_ms))},
                             {"finished", Iso(FromMillis(r.finished_ms))},
                             {"selected", r.selected},
                             {"survivors", r.survivors},
                             {"model_version", r.model_version},
                             {"epsilon", r.epsilon},
                             {"reason", r.reason}});
  }
  out["models"] = nlohmann::json::array();
  for (const PublishedModel& m : s.models) {
    out["models"].push_back(
        {{"version", m.version}, {"round_id", m.round_id}, {"bundle_sha256", absl::BytesToHexString(m.bundle_sha256)}});
  }
  out["rollouts"] = nlohmann::json::array();
  for (const RolloutRecord& r : s.rollouts) {
    out["rollouts"].push_back({{"version", r.version},
                               {"previous", r.previous},
                               {"state", r.state},
                               {"started", Iso(FromMillis(r.started_ms))},
                               {"decided", Iso(FromMillis(r.decided_ms))},
                               {"decided_by", r.decided_by},
                               {"reason", r.reason},
                               {"rollback_version", r.rollback_version}});
  }
  out["drift"] = nlohmann::json::array();
  for (const DriftFlag& f : s.drift) {
    out["drift"].push_back({{"scope", f.scope}, {"since", Iso(FromMillis(f.flagged_ms))}, {"reason", f.reason}});
  }
  // Device text may hold invalid UTF-8: replaced, never an exception.
  return out.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace tinyfed::aggregator
