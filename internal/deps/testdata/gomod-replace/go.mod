module example.com/replace

go 1.22

require github.com/google/uuid v1.6.0

// The build uses v1.5.0 instead: that is what is fetched and recorded.
replace github.com/google/uuid v1.6.0 => github.com/google/uuid v1.5.0
