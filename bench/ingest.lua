-- wrk script for bench/ingest.sh: POST /webhooks/{source} with a native body naming two media
-- IDs, bearer auth.
--   wrk -s bench/ingest.lua URL   with   TOKEN, SOURCE, RUN (an ID prefix) and WORKLOAD in the
--   environment:
--     new   IDs that are new on every request (thread number + counter): every event inserts
--     pool  IDs drawn uniformly from a pool of POOL (default 100000): mostly merges
--     zipf  IDs drawn from the same pool with Zipf skew ZIPF_S (default 1.1): most events on a
--           few thousand IDs, as CMS traffic is (editors save the same video again and again)
--     urls  two file URLs on cdn.example.com, new on every request (a cover and a subtitle
--           file): the same as new, through URL validation and normalisation

local token = os.getenv("TOKEN") or "bench-secret"
local source = os.getenv("SOURCE") or "cms"
local run = os.getenv("RUN") or "r"
local workload = os.getenv("WORKLOAD") or "new"
local pool = tonumber(os.getenv("POOL") or "100000")
local skew = tonumber(os.getenv("ZIPF_S") or "1.1")

local threads = {}
local counter = 1
local cdf = nil

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   -- A script argument (`wrk ... -- PREFIX`) overrides RUN: several wrk processes at once.
   if args[1] then run = args[1] end
   wrk.method = "POST"
   wrk.path = "/webhooks/" .. source
   wrk.headers["Authorization"] = "Bearer " .. token
   wrk.headers["Content-Type"] = "application/json"
   math.randomseed(os.time() * 1000 + tid)
   if workload == "zipf" then
      cdf = {}
      local total = 0
      for k = 1, pool do
         total = total + 1 / (k ^ skew)
         cdf[k] = total
      end
      for k = 1, pool do
         cdf[k] = cdf[k] / total
      end
   end
end

-- The rank (1..pool) whose cumulative weight first reaches a uniform draw.
local function zipf_rank()
   local u = math.random()
   local lo, hi = 1, pool
   while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < u then lo = mid + 1 else hi = mid end
   end
   return lo
end

local function pool_id(rank)
   return "pool-" .. rank
end

function request()
   local a, b
   if workload == "pool" then
      a, b = pool_id(math.random(pool)), pool_id(math.random(pool))
   elseif workload == "zipf" then
      a, b = pool_id(zipf_rank()), pool_id(zipf_rank())
   else
      counter = counter + 1
      local id = run .. "-" .. tid .. "-" .. counter
      a, b = id .. "a", id .. "b"
   end
   if workload == "urls" then
      local base = "https://cdn.example.com/videos/"
      local body = '{"urls": ["' .. base .. a .. '/cover.jpg", "' .. base .. b .. '/en.vtt"], "task": "Refresh"}'
      return wrk.format(nil, nil, nil, body)
   end
   local body = '{"media_ids": ["' .. a .. '", "' .. b .. '"], "task": "Refresh"}'
   return wrk.format(nil, nil, nil, body)
end
