-- POST /webhooks/cms with 5 fresh media IDs per request.
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
function request()
  counter = counter + 1
  local ids = {}
  for k = 1, 5 do ids[k] = string.format('"b%s_%d_%d"', tid, counter, k) end
  return wrk.format(nil, "/webhooks/cms", nil, '{"media_ids":[' .. table.concat(ids, ",") .. ']}')
end
