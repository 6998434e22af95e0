-- dmsnap: create snapshots, their user properties and bookmarks in one
-- transaction group (zfs-program(8)). argv, per set: snapshot, bookmark
-- ("" for none), number of properties N, then N name/value pairs.
-- A sync call that fails after others succeeded does not undo them, so
-- every check runs before the first change, and a failure after it
-- destroys the snapshots this program made (bookmarks cannot be destroyed
-- from a channel program; they are made last, after their checks passed).
local argv = (...)["argv"]
local sets = {}
local i = 1
while i <= #argv do
	local s = { snap = argv[i], bm = argv[i + 1], props = {} }
	local n = tonumber(argv[i + 2])
	i = i + 3
	for _ = 1, n do
		table.insert(s.props, { argv[i], argv[i + 1] })
		i = i + 2
	end
	table.insert(sets, s)
end

local made = {}
local function fail(what, err)
	for k = #made, 1, -1 do
		zfs.sync.destroy(made[k])
	end
	error(what .. ": errno " .. err)
end

for _, s in ipairs(sets) do
	local err = zfs.check.snapshot(s.snap)
	if err ~= 0 then
		fail("snapshot " .. s.snap, err)
	end
end
for _, s in ipairs(sets) do
	local err = zfs.sync.snapshot(s.snap)
	if err ~= 0 then
		fail("snapshot " .. s.snap, err)
	end
	table.insert(made, s.snap)
end
for _, s in ipairs(sets) do
	for _, p in ipairs(s.props) do
		local err = zfs.check.set_prop(s.snap, p[1], p[2])
		if err ~= 0 then
			fail("set " .. p[1] .. " on " .. s.snap, err)
		end
	end
	if s.bm ~= "" then
		local err = zfs.check.bookmark(s.snap, s.bm)
		if err ~= 0 then
			fail("bookmark " .. s.bm, err)
		end
	end
end
for _, s in ipairs(sets) do
	for _, p in ipairs(s.props) do
		local err = zfs.sync.set_prop(s.snap, p[1], p[2])
		if err ~= 0 then
			fail("set " .. p[1] .. " on " .. s.snap, err)
		end
	end
end
for _, s in ipairs(sets) do
	if s.bm ~= "" then
		local err = zfs.sync.bookmark(s.snap, s.bm)
		if err ~= 0 then
			fail("bookmark " .. s.bm, err)
		end
	end
end
return #sets
