module example.com/local

go 1.22

require example.com/lib v0.0.0

require github.com/google/uuid v1.6.0 // indirect

replace example.com/lib => ./lib
