// Command bench imports a set of popular modules whose module graph adds up to about a hundred modules, for
// benchmarking gomod ingestion against go mod download.
package main

import (
	_ "github.com/aws/aws-sdk-go-v2/service/s3"
	_ "github.com/gin-gonic/gin"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/labstack/echo/v4"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/sirupsen/logrus"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "github.com/stretchr/testify/assert"
	_ "go.uber.org/zap"
	_ "google.golang.org/grpc"
	_ "gorm.io/gorm"
)

func main() {}
