-- scripts/test.lua -- run every test layer and print one summary line.
--
-- Called by `./dev test` after the plain build.  Layers: C unit tests
-- (ctest), busted specs (core, storage, http, cluster), then the same C
-- tests and the core and cluster specs again on an ASan+UBSan build.  The
-- randomized spec (spec/core/random_spec.lua) runs as two processes over
-- disjoint seed ranges, one per core: 600 seeds on the plain build, 120 under
-- ASan; last, each fuzz target for 20 s (RAFTING_FUZZ_SECONDS).  Options:
-- --quick (skip the sanitizer and fuzz builds), --only=PATTERN (spec
-- dirs, or "fuzz"), --long (10,000 randomized seeds on the plain build).  Exits
-- non-zero if anything failed.  See docs/testing.md.

local quick, only, long = false, nil, false
for _, a in ipairs(arg) do
  if a == "--quick" then quick = true
  elseif a == "--long" then long = true
  elseif a:match("^%-%-only=") then only = a:match("^%-%-only=(.*)")
  else io.stderr:write("test: unknown option " .. a .. "\n"); os.exit(2) end
end

local passed, failed, failures, replays = 0, 0, {}, {}
-- every process the harness starts is recorded here (see docs/harness.md)
local pidfile = os.tmpname()

local function sh(cmd)
  io.stdout:write("\n$ " .. cmd .. "\n"); io.stdout:flush()
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = {}
  for line in p:lines() do
    out[#out + 1] = line
    io.stdout:write(line, "\n"); io.stdout:flush()
  end
  local ok, _, code = p:close()
  return ok, code, out
end

local function record(name, ok)
  if ok then passed = passed + 1
  else failed = failed + 1; failures[#failures + 1] = name end
end

local function ctest(dir)
  local _, _, out = sh("cd " .. dir .. " && ctest --output-on-failure")
  local seen = false
  for _, l in ipairs(out) do
    local name, res = l:match("Test%s+#%d+: (%S+) %.+%s*(%*?%*?%*?%w+)")
    if name then seen = true; record(dir .. ": " .. name, res == "Passed") end
  end
  if not seen then record(dir .. ": ctest ran", false) end
end

-- record the tests of a busted -o TAP run (label names them)
local function tally(label, ok, out)
  local n, bad = 0, 0
  for _, l in ipairs(out) do
    local res, name = l:match("^(n?o?t? ?ok) %d+ %- (.*)")
    if res then
      n = n + 1
      if res ~= "ok" then bad = bad + 1 end
      record(label .. ": " .. name, res == "ok")
    end
  end
  -- a crash or an error outside any test shows only in the exit status
  if n == 0 or (not ok and bad == 0) then
    record(label .. ": busted run completed", false)
  end
end

local function busted_cmd(build, env, args)
  return string.format(
    "RAFTING_PIDFILE=" .. pidfile .. " %s busted --lpath='./lua/?.lua;./lua/?/init.lua' --cpath='./%s/lua/?.so'" ..
    " -o TAP %s", env or "", build, args)
end

local function busted(dir, build, env)
  -- the randomized spec runs on its own, in parallel (random_parallel)
  local extra = dir == "spec/core" and "--exclude-pattern=random_spec " or ""
  local ok, _, out = sh(busted_cmd(build, env, extra .. dir))
  tally(dir, ok, out)
end

-- The randomized spec on two processes (one per core) over disjoint seed
-- ranges: seeds 1..h and h+1..total.  Each half is recorded on its own; a
-- failure prints its seed and the command that replays it.
local function random_parallel(build, env, total)
  local h = (total + 1) // 2
  local ranges = { { 1, h }, { h + 1, total - h } }
  local jobs, parts = {}, {}
  for i, r in ipairs(ranges) do
    if r[2] > 0 then
      local out = os.tmpname()
      local cmd = busted_cmd(build, string.format(
        "%s RAFTING_BUILD=%s RAFTING_SEED=%d RAFTING_SEEDS=%d", env or "",
        build, r[1], r[2]),
        "spec/core/random_spec.lua")
      jobs[#jobs + 1] = { out = out, first = r[1], last = r[1] + r[2] - 1,
                          cmd = cmd }
      parts[#parts + 1] = string.format("(%s >%s 2>&1; echo $? >%s.rc) &",
                                        cmd, out, out)
      io.stdout:write("\n$ " .. cmd .. " &\n")
    end
  end
  io.stdout:flush()
  local t0 = os.time()
  os.execute(table.concat(parts, " ") .. " wait")
  local secs = os.time() - t0
  for _, j in ipairs(jobs) do
    local out = {}
    for line in io.lines(j.out) do out[#out + 1] = line end
    local f = io.open(j.out .. ".rc")
    local rc = f and tonumber(f:read("l")) or -1
    if f then f:close() end
    os.remove(j.out); os.remove(j.out .. ".rc")
    io.stdout:write(("\n-- randomized spec, seeds %d..%d (%s):\n"):format(
      j.first, j.last, build))
    io.stdout:write(table.concat(out, "\n"), "\n")
    tally(("spec/core/random_spec.lua [%s, seeds %d..%d]"):format(
      build, j.first, j.last), rc == 0, out)
    -- repeated in the summary: the seed and how to replay it
    for _, l in ipairs(out) do
      local r = l:match("replay: (.*)")
      if r then replays[#replays + 1] = build .. ": " .. r end
    end
  end
  io.stdout:write(("\nrandomized spec: %d seeds on %d processes (%s) in "
    .. "%d s wall\n"):format(total, #jobs, build, secs))
  io.stdout:flush()
end

local function has_specs(dir)
  local p = io.popen("ls " .. dir .. "/*_spec.lua 2>/dev/null")
  local s = p:read("a"); p:close()
  return s ~= ""
end

local function want(dir) return not only or dir:find(only, 1, true) end

local suites = { "spec/core", "spec/sm", "spec/storage", "spec/http",
                 "spec/cluster", "spec/security", "spec/install" }

ctest("build")
for _, d in ipairs(suites) do
  if want(d) and has_specs(d) then
    busted(d, "build", "RAFTING_BIN=./build/rafting")
  end
end
if want("spec/core") then
  random_parallel("build", "", long and 10000 or 600)
end

if not quick then
  local ok = sh("cmake -S . -B build-asan -DRAFTING_SANITIZE=ON " ..
                "-DCMAKE_BUILD_TYPE=Debug >/dev/null && " ..
                "cmake --build build-asan -j$(nproc) > build-asan/build.log 2>&1" ..
                " || (cat build-asan/build.log; false)")
  record("asan build", ok)
  if ok then
    ctest("build-asan")
    local pre = io.popen("gcc -print-file-name=libasan.so"):read("l")
    local env = "LD_PRELOAD=" .. pre ..
      " ASAN_OPTIONS=detect_leaks=0:abort_on_error=1" ..
      " UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1" ..
      " RAFTING_BIN=./build-asan/rafting"
    for _, d in ipairs(suites) do -- spec/install checks the plain build
      if want(d) and has_specs(d) and d ~= "spec/install" then
        busted(d, "build-asan", env)
      end
    end
    -- the plain build ran the full count; under ASan a sample will do
    if want("spec/core") then random_parallel("build-asan", env, 120) end
  end
end

-- every fuzz target briefly (clang build-fuzz; docs/testing.md, "Fuzzing")
if not quick and want("fuzz") then
  local secs = tonumber(os.getenv("RAFTING_FUZZ_SECONDS")) or 20
  local _, _, out = sh("sh fuzz/run all " .. secs)
  local seen = false
  for _, l in ipairs(out) do
    local t, res = l:match("^fuzz: (%w+) (%a+)")
    if t and (res == "ok" or res == "FOUND") then
      seen = true
      record("fuzz " .. t .. " (" .. secs .. " s)", res == "ok")
    end
  end
  if not seen then record("fuzz: build and run", false) end
end

-- no node process may outlive the specs
record("no process started by the specs is alive",
       os.execute("lua5.4 spec/support/no_leftovers.lua " .. pidfile) == true)
os.remove(pidfile)
local p = io.popen("pgrep -af 'build(-asan)?/rafting --config' || true")
local left = p:read("a"); p:close()
record("no rafting process left behind", left == "")
if left ~= "" then
  print("left behind:\n" .. left)
  os.execute("pkill -9 -f 'build(-asan)?/rafting --config'")
end

if #failures > 0 then
  print("\nfailed:")
  for _, f in ipairs(failures) do print("  " .. f) end
  if #replays > 0 then
    print("\nreplay the failed seeds:")
    for _, r in ipairs(replays) do print("  " .. r) end
  end
end
print(string.format("\n%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
