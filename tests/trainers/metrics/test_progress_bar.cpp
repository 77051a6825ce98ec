// The progress bar driven by an injected stream, clock and TTY flag: plain log lines off a
// terminal (by step count and by time, never \r), one redrawn line on a terminal, rate limits,
// ETA from the smoothed rate, and QAT_NO_PROGRESS.
#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "tests/support/catch_torch.h"
#include "trainers/metrics/progress_bar.h"

using Catch::Contains;
using namespace qat::train;

namespace {

struct FakeClock {
  double t = 1000.0;
  std::function<double()> fn() {
    return [this] { return t; };
  }
};

ProgressOptions options(std::ostream& out, FakeClock& clock, bool tty) {
  ProgressOptions o;
  o.total = 500;
  o.out = &out;
  o.tty = tty;
  o.clock = clock.fn();
  return o;
}

std::vector<ProgressField> fields(double loss) {
  return {{"loss", std::to_string(loss).substr(0, 5)}, {"lr", "1.9e-05"}};
}

}  // namespace

TEST_CASE("Off a terminal the bar logs a plain line every N steps", "[metrics][progress]") {
  std::ostringstream out;
  FakeClock clock;
  ProgressOptions o = options(out, clock, false);
  o.log_every_steps = 100;
  o.log_interval_s = 1e9;  // by step count only
  {
    ProgressBar bar(o);
    for (int step = 1; step <= 250; ++step) {
      clock.t += 0.5;  // 0.5 s per step, 1000 tokens per step
      bar.update(step, fields(2.5), 1000);
    }
    bar.finish();
  }
  // Lines at steps 100 and 200, then finish() prints the last state (250) once.
  CHECK(out.str() ==
        "step 100/500 20% loss 2.500 lr 1.9e-05 2.0k tok/s ETA 3m20s\n"
        "step 200/500 40% loss 2.500 lr 1.9e-05 2.0k tok/s ETA 2m30s\n"
        "step 250/500 50% loss 2.500 lr 1.9e-05 2.0k tok/s ETA 2m05s\n");
  CHECK(out.str().find('\r') == std::string::npos);
}

TEST_CASE("Off a terminal the bar also logs every ~10 s", "[metrics][progress]") {
  std::ostringstream out;
  FakeClock clock;
  ProgressOptions o = options(out, clock, false);
  o.total = 10;
  o.unit = "";
  ProgressBar bar(o);
  for (int step = 1; step <= 10; ++step) {
    clock.t += 4.0;
    bar.update(step);
  }
  bar.finish();  // step 10 == total was printed by update, nothing more
  // 4 s per step: 12 s > 10 s at step 3, again at 6 and 9; the last step always prints.
  CHECK(out.str() ==
        "step 3/10 30% ETA 28s\n"
        "step 6/10 60% ETA 16s\n"
        "step 9/10 90% ETA 4.0s\n"
        "step 10/10 100% done\n");
}

TEST_CASE("On a terminal the bar redraws one line, rate-limited", "[metrics][progress]") {
  std::ostringstream out;
  FakeClock clock;
  ProgressOptions o = options(out, clock, true);
  o.width = 80;
  o.redraw_interval_s = 0.125;
  ProgressBar bar(o);
  for (int step = 1; step <= 120; ++step) {
    clock.t += 1.0 / 64;  // 64 steps per second (exact in binary): a redraw every 8 steps
    bar.update(step, {{"loss", "2.731"}, {"", "1.8k tok/s"}, {"mem", "1.2 GiB"}});
  }
  const std::string s = out.str();
  CHECK(s.find('\n') == std::string::npos);
  CHECK(std::count(s.begin(), s.end(), '\r') == 120 / 8);
  CHECK(bar.seconds_per_step() == 1.0 / 64);
  // The latest state fills 79 columns: step 120 of 500, a 17-cell bar 24% full, and the ETA of
  // 380 steps at 1/64 s.
  const std::string last = s.substr(s.rfind('\r') + 1);
  CHECK(last == "step 120/500 [####.............] 24% loss 2.731 1.8k tok/s mem 1.2 GiB ETA 5.9s");
  bar.print("eval loss 2.80");
  bar.finish();
  const std::string end = out.str().substr(s.size());
  // print(): the bar is blanked, the line printed, the bar redrawn; finish() ends the line.
  CHECK_THAT(end, Contains("\reval loss 2.80\n\rstep 120/500 ["));
  CHECK(end.back() == '\n');
  CHECK(std::count(end.begin(), end.end(), '\n') == 2);
}

TEST_CASE("The terminal line is fitted to the width", "[metrics][progress]") {
  std::ostringstream out;
  FakeClock clock;
  ProgressBar bar(options(out, clock, true));
  clock.t += 1;
  bar.update(250, {{"loss", "2.731"}, {"lr", "1.9e-05"}});
  // Wide: the bar is capped at 30 cells. Medium: it shrinks. Narrow: no bar, then cut.
  CHECK(bar.render(120) ==
        "step 250/500 [###############...............] 50% loss 2.731 lr 1.9e-05 ETA 1.0s");
  CHECK(bar.render(70) == "step 250/500 [#########..........] 50% loss 2.731 lr 1.9e-05 ETA 1.0s");
  CHECK(bar.render(50) == "step 250/500 50% loss 2.731 lr 1.9e-05 ETA 1.0s");
  CHECK(bar.render(20) == "step 250/500 50% lo");
  CHECK(bar.render(0) == "step 250/500 50% loss 2.731 lr 1.9e-05 ETA 1.0s");
}

TEST_CASE("A resumed run measures its rate from the resume step", "[metrics][progress]") {
  std::ostringstream out;
  FakeClock clock;
  ProgressOptions o = options(out, clock, false);
  o.initial_step = 400;
  o.log_every_steps = 10;
  ProgressBar bar(o);
  clock.t += 20;  // 10 steps in 20 s since the resume, not 410 steps
  bar.update(410);
  CHECK(out.str() == "step 410/500 82% ETA 3m00s\n");
}

TEST_CASE("QAT_NO_PROGRESS=1 and enabled=false silence the bar", "[metrics][progress]") {
  std::ostringstream out;
  FakeClock clock;
  SECTION("option") {
    ProgressOptions o = options(out, clock, true);
    o.enabled = false;
    ProgressBar bar(o);
    bar.update(500);
    bar.finish();
    bar.print("summary");  // messages still print
    CHECK(out.str() == "summary\n");
  }
  SECTION("environment") {
    ::setenv("QAT_NO_PROGRESS", "1", 1);
    {
      ProgressBar bar(options(out, clock, false));
      CHECK_FALSE(bar.enabled());
      bar.update(500);
    }
    ::setenv("QAT_NO_PROGRESS", "0", 1);
    CHECK(ProgressBar(options(out, clock, false)).enabled());
    ::unsetenv("QAT_NO_PROGRESS");
    CHECK(out.str().empty());
  }
}

TEST_CASE("ProgressBar rejects invalid options", "[metrics][progress]") {
  ProgressOptions o;
  o.total = -1;
  CHECK_THROWS_WITH(ProgressBar(o), Contains("total must be >= 0"));
  o.total = 10;
  o.smoothing = 0;
  CHECK_THROWS_WITH(ProgressBar(o), Contains("smoothing must be in (0, 1]"));
}
