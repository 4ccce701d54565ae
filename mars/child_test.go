package mars

const childEnv = "MARS_TEST_CHILD"

func childMain() int { return 0 }
