-- wrk script for bench/serve_load.sh: every request POSTs the JSON body in the file $BODY_FILE.
-- Counts answers that are not 2xx and 2xx answers that do not name $EXPECT_PERSON (a wrong search
-- result under load), and prints one RESULT line that serve_load.sh parses.
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("ARCFORGE_TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
local expected = '"person":"' .. os.getenv("EXPECT_PERSON") .. '"'

-- Per-thread counters live in each thread's Lua state; done() collects them through setup's handles.
non2xx, wrong = 0, 0
local threads = {}
function setup(thread) table.insert(threads, thread) end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif not string.find(body, expected, 1, true) then
    wrong = wrong + 1
  end
end

function done(summary, latency, requests)
  local bad, mismatched = 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    mismatched = mismatched + thread:get("wrong")
  end
  local e = summary.errors
  io.write(string.format(
      "RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=%d wrong=%d " ..
      "socket_errors=%d\n", summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, bad, mismatched, e.connect + e.read + e.write + e.timeout))
end
