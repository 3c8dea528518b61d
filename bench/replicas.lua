-- POST /webhooks/cms with 5 fresh media IDs per request; with DELIVERY_IDS set in the
-- environment, each request also carries a fresh Idempotency-Key (a delivery ID).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-secret"
-- IDs are unique per wrk process (its first script argument) and per thread.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end
function init(args)
  tid = (args[1] or "p") .. "_" .. tostring(thread_no)
end
local counter = 0
local delivery_ids = os.getenv("DELIVERY_IDS")
function request()
  counter = counter + 1
  local ids = {}
  for k = 1, 5 do ids[k] = string.format('"b%s_%d_%d"', tid, counter, k) end
  local headers = nil
  if delivery_ids then
    -- Headers given here replace wrk.headers, so they are copied first.
    headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    headers["Idempotency-Key"] = string.format("d%s_%d", tid, counter)
  end
  return wrk.format(nil, "/webhooks/cms", headers, '{"media_ids":[' .. table.concat(ids, ",") .. ']}')
end
