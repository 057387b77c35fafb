"""What every Kafka client of reco shares: the aiokafka edge."""
